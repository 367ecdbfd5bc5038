/**
 * Models and adapters for the GGUF tests, made in temporary folders from stories260K: architecture variants
 * (its weights under another `model_type`, or with Llama 3 RoPE scaling), a small slice of a story task, and
 * seeded adapters with nonzero B.
 *
 * @module
 */

import { join } from "node:path";
import { readConfig } from "../../src/model/config.ts";
import { type LoraConfig, validateLora } from "../../src/model/lora.ts";
import { writeAdapter } from "../../src/model/peft.ts";
import { openCheckpoint, readTensorF32, writeSafetensors } from "../../src/model/safetensors.ts";
import { Rng } from "../../src/util/random.ts";
import { DATA, STORIES } from "../model/shared.ts";
import { nonzeroLora } from "../model/random_lora.ts";

/** A fresh temporary folder, removed when the test process ends. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  return dir;
}

/**
 * stories260K in `dir` with config fields replaced and tensors added (name → shape, filled with seeded values in
 * [−scale, scale]) or dropped; matrices stored as `matrices` (F32, or F16 to hold the weights an F16 GGUF holds).
 */
export async function storiesVariant(
  dir: string,
  config: Record<string, unknown>,
  extra: Record<string, number[]> = {},
  options: { scale?: number; matrices?: "F32" | "F16"; drop?: readonly string[] } = {},
): Promise<string> {
  const scale = options.scale ?? 0.5;
  await Deno.mkdir(dir, { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    await Deno.copyFile(join(STORIES, f), join(dir, f));
  }
  const json = JSON.parse(await Deno.readTextFile(join(STORIES, "config.json")));
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ ...json, ...config }));
  const tensors = [];
  for (const [name, info] of (await openCheckpoint(STORIES)).tensors) {
    if (options.drop?.includes(name)) continue;
    const dtype = info.shape.length === 2 ? options.matrices ?? "F32" : "F32";
    tensors.push({ name, dtype, shape: [...info.shape], data: await readTensorF32(info) });
  }
  const rng = new Rng(7);
  for (const [name, shape] of Object.entries(extra)) {
    const data = Float32Array.from(
      { length: shape.reduce((a, b) => a * b, 1) },
      () => rng.uniform(-scale, scale),
    );
    tensors.push({ name, dtype: "F32" as "F32" | "F16", shape, data });
  }
  await writeSafetensors(join(dir, "model.safetensors"), tensors);
  return dir;
}

/** q/k/v bias shapes of every layer of stories260K (qwen2 has them). */
export function qkvBiases(layers = 5, q = 64, kv = 32): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (let l = 0; l < layers; l++) {
    out[`model.layers.${l}.self_attn.q_proj.bias`] = [q];
    out[`model.layers.${l}.self_attn.k_proj.bias`] = [kv];
    out[`model.layers.${l}.self_attn.v_proj.bias`] = [kv];
  }
  return out;
}

/** The first rows of each split of story-object, as a small dataset folder. */
export async function storySlice(dir: string, rows: { train: number; validation: number; test: number }) {
  await Deno.mkdir(dir, { recursive: true });
  for (const [split, n] of Object.entries(rows)) {
    const lines = (await Deno.readTextFile(join(DATA, "story-object", `${split}.jsonl`))).split("\n");
    await Deno.writeTextFile(join(dir, `${split}.jsonl`), lines.slice(0, n).join("\n") + "\n");
  }
  return dir;
}

/** A PEFT adapter for the model in `modelDir` with seeded A and nonzero seeded B in [−0.2, 0.2]. */
export async function randomAdapter(
  modelDir: string,
  dir: string,
  lora: LoraConfig,
  seed = 3,
): Promise<string> {
  const cfg = await readConfig(modelDir);
  const config = validateLora(cfg, lora);
  const params = nonzeroLora(cfg, config, { seed, range: 0.2 });
  await writeAdapter(dir, config, params, { baseModel: modelDir });
  return dir;
}

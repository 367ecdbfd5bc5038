/**
 * Frozen weights are mapped from the checkpoint, once: sessions take the checkpoint's folder, not its bytes, and
 * the session settings that keep one copy (no constant folding, no pre-packing) and plan no memory pattern are pure
 * re-arrangements: loss and LoRA/gate gradients equal those of onnxruntime's defaults within 1e-5.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { gradients } from "../../src/graph/autodiff.ts";
import { Graph, type Value } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { batchFeeds } from "../../src/data/sequence.ts";
import { readConfig } from "../../src/model/config.ts";
import { GATE_LOGITS, loraInputs } from "../../src/model/graphs.ts";
import { validateLora } from "../../src/model/lora.ts";
import { openCheckpoint } from "../../src/model/safetensors.ts";
import { batchInputs, lmLoss } from "../../src/model/lm_loss.ts";
import { WeightStore } from "../../src/model/weights.ts";
import {
  createSession,
  type HostTensor,
  hostTensor,
  type SessionOptions,
} from "../../src/runtime/session.ts";
import { Rng } from "../../src/util/random.ts";
import { nonzeroLora } from "./random_lora.ts";
import { STORIES } from "./shared.ts";

const FIXTURES = fileURLToPath(new URL("../../fixtures/", import.meta.url));

/** onnxruntime's own defaults: fold constants, pre-pack weights, plan a memory pattern. */
const ORT_DEFAULTS: SessionOptions = { foldConstants: true, prepack: true, memoryPattern: true };

Deno.test("a float32 session maps the checkpoint's files: no weight bytes pass through JavaScript", async () => {
  for (const dir of [STORIES, `${FIXTURES}tiny-llama-bf16-sharded`]) {
    const weights = new WeightStore(await openCheckpoint(dir));
    const data = await weights.sessionData();
    // The folder itself once symlinks are followed: onnxruntime refuses files reached through a link out of it.
    assert.equal(data.externalDataFolder, await Deno.realPath(weights.checkpoint.dir));
    assert.equal(data.externalData, undefined, dir);
  }
});

for (
  const [name, dir, vocabChunk] of [
    ["stories260K", STORIES, 100],
    ["the tiny fixture", `${FIXTURES}tiny-llama`, 1 << 20],
    ["the sharded BF16 fixture", `${FIXTURES}tiny-llama-bf16-sharded`, 1 << 20],
  ] as const
) {
  Deno.test(`${name}: loss and LoRA/gate gradients with weights mapped once equal onnxruntime's defaults`, async () => {
    const cfg = await readConfig(dir);
    const weights = new WeightStore(await openCheckpoint(dir));
    const L = cfg.numLayers;
    const lora = validateLora(cfg, {
      rank: 4,
      alpha: 8,
      rslora: false,
      targets: ["q_proj", "v_proj", "down_proj"],
      layers: [...Array(L).keys()],
    });
    const g = new Graph();
    const binding = loraInputs(g, cfg, { config: lora, gated: true });
    const { loss, backward } = lmLoss(cfg, weights, batchInputs(g), binding, { vocabChunk });
    const wrt: Value[] = [...binding.params.values(), g.inputs.find((v) => v.name === GATE_LOGITS)!];
    const outputs: Record<string, Value> = { loss };
    const grads = gradients(backward.value, wrt, { seed: backward.seed });
    grads.forEach((d, i) => (outputs[`d/${wrt[i].name}`] = d));
    const model = serialize(g, outputs);

    const rng = new Rng(3);
    const ids = (n: number) => Array.from({ length: n }, () => rng.int(3, cfg.vocabSize - 1));
    const feeds: Record<string, HostTensor> = {
      ...batchFeeds([{ ids: ids(24) }, { ids: ids(15), targetFrom: 4 }]),
      ...nonzeroLora(cfg, lora, { seed: 1, range: 0.05 }),
      [GATE_LOGITS]: hostTensor("float32", [L], rng.uniforms(L, -0.5, 0.5)),
    };
    const run = async (options: SessionOptions) => {
      const session = await createSession(model, { ...await weights.sessionData(), ...options });
      const out = await session.run(feeds);
      await session.release();
      return out;
    };
    const mapped = await run({}), folded = await run(ORT_DEFAULTS);
    for (const key of Object.keys(outputs)) {
      const a = mapped[key].data as Float32Array, b = folded[key].data as Float32Array;
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
      assert.ok(worst <= 1e-5, `${key}: differs by ${worst}`);
    }
  });
}

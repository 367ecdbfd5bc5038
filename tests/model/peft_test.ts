/**
 * PEFT adapters on disk: the key mapping both ways, writing and reading back, adapters that do not fit the
 * model, and scoring with an adapter read from disk equal to scoring with the parameters in memory.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { readConfig } from "../../src/model/config.ts";
import { buildScoringGraph } from "../../src/model/graphs.ts";
import { initLora, type LoraConfig, loraNames, TARGET_MODULES } from "../../src/model/lora.ts";
import { loadModel } from "../../src/model/model.ts";
import { AdapterError, fromPeftKey, readAdapter, toPeftKey, writeAdapter } from "../../src/model/peft.ts";
import { type TensorToWrite, writeSafetensors } from "../../src/model/safetensors.ts";
import { Scorer } from "../../src/flexora/score.ts";
import type { HostTensor } from "../../src/runtime/session.ts";
import { flexoraJson, tempJsonl, TINY, tinyRows } from "../cli/run.ts";
import { nonzeroLora } from "./random_lora.ts";

const tiny = await readConfig(TINY); // D 32, q 32, kv 16, intermediate 64, 3 layers
const tmp = await Deno.makeTempDir({ prefix: "flexora-peft-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
let dirs = 0;
/** A fresh path under the test's temp folder that does not exist yet. */
const freshDir = () => join(tmp, `adapter-${dirs++}`);

/** Random LoRA parameters whose B matrices are nonzero too, so the adapter changes the model's output. */
function randomParams(lora: LoraConfig, seed: number): Record<string, HostTensor> {
  return nonzeroLora(tiny, lora, { seed, range: 0.2 });
}

Deno.test("toPeftKey and fromPeftKey are inverse for every target module over several layers", () => {
  for (const layer of [0, 1, 2, 9, 31, 127]) {
    for (const module of TARGET_MODULES) {
      const names = loraNames(layer, module);
      for (const [matrix, name] of [["A", names.a], ["B", names.b]] as const) {
        const key = toPeftKey(name);
        assert.equal(key, `base_model.model.${name}`);
        assert.deepEqual(fromPeftKey(key), { name, layer, module, matrix });
        const legacy = key.replace(`.lora_${matrix}.weight`, `.lora_${matrix}.default.weight`);
        assert.deepEqual(fromPeftKey(legacy), { name, layer, module, matrix }, legacy);
      }
    }
  }
});

Deno.test("fromPeftKey is null for keys that are not LoRA weights of a decoder layer", () => {
  for (
    const key of [
      "model.layers.0.self_attn.q_proj.lora_A.weight", // no base_model.model. prefix
      "base_model.model.model.layers.0.self_attn.q_proj.weight", // a base weight
      "base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight",
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.bias",
      "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
      "base_model.model.model.layers.x.self_attn.q_proj.lora_A.weight",
      "base_model.model.model.layers.0.attn.q_proj.lora_A.weight",
      "base_model.model.model.embed_tokens.lora_embedding_A",
      "base_model.model.model.embed_tokens.weight",
      "base_model.model.lm_head.weight",
      "",
    ]
  ) {
    assert.equal(fromPeftKey(key), null, key);
  }
});

Deno.test("writeAdapter then readAdapter gives back the config and the exact values", async () => {
  const cases: LoraConfig[] = [
    { rank: 4, alpha: 16, rslora: true, targets: ["q_proj", "v_proj", "down_proj"], layers: [0, 2] },
    { rank: 2, alpha: 2, rslora: false, targets: TARGET_MODULES, layers: [0, 1, 2] },
    { rank: 1, alpha: 0.5, rslora: false, targets: ["o_proj"], layers: [1] },
  ];
  for (const [i, lora] of cases.entries()) {
    const dir = freshDir();
    const params = randomParams(lora, i);
    await writeAdapter(dir, lora, params, { baseModel: "fixtures/tiny-llama" });
    const json = JSON.parse(await Deno.readTextFile(join(dir, "adapter_config.json")));
    assert.equal(json.peft_type, "LORA");
    assert.deepEqual([json.r, json.lora_alpha, json.use_rslora], [lora.rank, lora.alpha, lora.rslora]);
    assert.deepEqual(json.target_modules, [...lora.targets]);

    const adapter = await readAdapter(dir, tiny);
    assert.equal(adapter.dir, dir);
    assert.equal(adapter.baseModel, "fixtures/tiny-llama");
    assert.deepEqual(adapter.config, { ...lora, targets: [...lora.targets], layers: [...lora.layers] });
    assert.deepEqual(Object.keys(adapter.params).sort(), Object.keys(params).sort());
    for (const [name, t] of Object.entries(params)) {
      assert.deepEqual(adapter.params[name].dims, t.dims, name);
      assert.deepEqual(adapter.params[name].data, t.data, name);
    }
  }
});

Deno.test("readAdapter sorts layers and takes the '.lora_A.default.weight' spelling", async () => {
  const lora: LoraConfig = { rank: 2, alpha: 4, rslora: false, targets: ["k_proj"], layers: [2, 0] };
  const params = randomParams(lora, 5);
  const dir = await craft(
    { peft_type: "LORA", r: 2, lora_alpha: 4 },
    Object.entries(params).reverse().map(([name, t]) => ({
      name: toPeftKey(name).replace(/\.weight$/, ".default.weight"),
      dtype: "F32",
      shape: t.dims,
      data: t.data as Float32Array,
    })),
  );
  const adapter = await readAdapter(dir, tiny);
  assert.deepEqual(adapter.config, { ...lora, layers: [0, 2] });
  assert.equal(adapter.baseModel, null);
  for (const [name, t] of Object.entries(params)) assert.deepEqual(adapter.params[name].data, t.data);
});

Deno.test("writeAdapter refuses a folder that exists and leaves it untouched", async () => {
  const lora: LoraConfig = { rank: 2, alpha: 4, rslora: false, targets: ["q_proj"], layers: [0] };
  const dir = freshDir();
  await Deno.mkdir(dir);
  await Deno.writeTextFile(join(dir, "keep.txt"), "mine");
  await assert.rejects(
    writeAdapter(dir, lora, initLora(tiny, lora, 0)),
    (e) => e instanceof AdapterError && e.message.includes(dir) && /already exists/.test(e.message),
  );
  assert.deepEqual(await names(dir), ["keep.txt"]);
  assert.ok(!(await names(tmp)).some((n) => n.includes(".tmp-")));
});

Deno.test("writeAdapter that fails midway leaves neither the folder nor a *.tmp-* folder behind", async () => {
  const lora: LoraConfig = { rank: 2, alpha: 4, rslora: false, targets: ["q_proj"], layers: [0] };
  const parent = join(tmp, "failing");
  await Deno.mkdir(parent);
  const dir = join(parent, "adapter");
  const broken = { ...initLora(tiny, lora, 0) };
  broken["model.layers.0.self_attn.q_proj.lora_B.weight"] = {
    dtype: "float32",
    dims: [32, 2],
    data: new Float32Array(3), // 3 values where the shape needs 64
  };
  await assert.rejects(writeAdapter(dir, lora, broken), /needs 64 values, got 3/);
  assert.deepEqual(await names(parent), []);
});

// ---- adapters that cannot be read or do not fit the model ----

const A0 = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
const B0 = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
const CONFIG = { peft_type: "LORA", r: 2, lora_alpha: 4, target_modules: ["q_proj"] };

/** A tensor of zeros. */
function t(name: string, shape: [number, number]): TensorToWrite {
  return { name, dtype: "F32", shape, data: new Float32Array(shape[0] * shape[1]) };
}

/** Writes an adapter folder: a config (object, raw text, or none) and a safetensors file (or none). */
async function craft(
  config: Record<string, unknown> | string | null,
  tensors: TensorToWrite[] | null,
): Promise<string> {
  const dir = freshDir();
  await Deno.mkdir(dir);
  if (config !== null) {
    const text = typeof config === "string" ? config : JSON.stringify(config);
    await Deno.writeTextFile(join(dir, "adapter_config.json"), text);
  }
  if (tensors) await writeSafetensors(join(dir, "adapter_model.safetensors"), tensors);
  return dir;
}

const GOOD = [t(A0, [2, 32]), t(B0, [32, 2])];
const BAD: {
  name: string;
  config: Record<string, unknown> | string | null;
  tensors: TensorToWrite[] | null;
  file: "adapter_config.json" | "adapter_model.safetensors";
  problem: RegExp;
}[] = [
  {
    name: "no adapter_config.json",
    config: null,
    tensors: GOOD,
    file: "adapter_config.json",
    problem: /cannot read the adapter config/,
  },
  {
    name: "corrupt JSON",
    config: '{"peft_type": "LORA", "r": ',
    tensors: GOOD,
    file: "adapter_config.json",
    problem: /not a valid adapter config/,
  },
  {
    name: "a JSON array",
    config: "[1, 2]",
    tensors: GOOD,
    file: "adapter_config.json",
    problem: /not a valid adapter config \(not a JSON object\)/,
  },
  {
    name: "peft_type IA3",
    config: { ...CONFIG, peft_type: "IA3" },
    tensors: GOOD,
    file: "adapter_config.json",
    problem: /'peft_type' must be "LORA", got "IA3"/,
  },
  {
    name: "a non-empty rank_pattern",
    config: { ...CONFIG, rank_pattern: { q_proj: 8 } },
    tensors: GOOD,
    file: "adapter_config.json",
    problem: /'rank_pattern' is not supported.*"q_proj":8/,
  },
  {
    name: "a non-empty alpha_pattern",
    config: { ...CONFIG, alpha_pattern: { q_proj: 8 } },
    tensors: GOOD,
    file: "adapter_config.json",
    problem: /'alpha_pattern' is not supported/,
  },
  {
    name: "use_dora: true",
    config: { ...CONFIG, use_dora: true },
    tensors: GOOD,
    file: "adapter_config.json",
    problem: /DoRA adapters \('use_dora': true\) are not supported/,
  },
  {
    name: "no rank",
    config: { peft_type: "LORA", lora_alpha: 4 },
    tensors: GOOD,
    file: "adapter_config.json",
    problem: /'r' must be a positive integer, is missing/,
  },
  {
    name: "a rank of 0",
    config: { ...CONFIG, r: 0 },
    tensors: GOOD,
    file: "adapter_config.json",
    problem: /'r' must be a positive integer, got 0/,
  },
  {
    name: "no adapter_model.safetensors",
    config: CONFIG,
    tensors: null,
    file: "adapter_model.safetensors",
    problem: /cannot read/,
  },
  {
    name: "an A whose shape does not fit the rank",
    config: CONFIG,
    tensors: [t(A0, [4, 32]), t(B0, [32, 2])],
    file: "adapter_model.safetensors",
    problem:
      /'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight' has shape \[4,32\], the model needs \[2,32\] for rank 2/,
  },
  {
    name: "a B whose shape does not fit the model",
    config: CONFIG,
    tensors: [t(A0, [2, 32]), t(B0, [16, 2])],
    file: "adapter_model.safetensors",
    problem: /lora_B\.weight' has shape \[16,2\], the model needs \[32,2\]/,
  },
  {
    name: "a module the model lacks",
    config: CONFIG,
    tensors: [...GOOD, t("base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight", [2, 32])],
    file: "adapter_model.safetensors",
    problem: /qkv_proj.*'qkv_proj', which the model lacks/,
  },
  {
    name: "a layer past the model's layers",
    config: CONFIG,
    tensors: [
      ...GOOD,
      t(A0.replace("layers.0", "layers.3"), [2, 32]),
      t(B0.replace("layers.0", "layers.3"), [32, 2]),
    ],
    file: "adapter_model.safetensors",
    problem: /layers\.3\.self_attn\.q_proj\.lora_A\.weight' is for layer 3; the model has layers 0\.\.2/,
  },
  {
    name: "an A without its B",
    config: CONFIG,
    tensors: [t(A0, [2, 32])],
    file: "adapter_model.safetensors",
    problem: /'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_B\.weight' is missing/,
  },
  {
    name: "a module in one layer but not in another",
    config: CONFIG,
    tensors: [
      ...GOOD,
      t(A0.replace("layers.0", "layers.1").replace("q_proj", "v_proj"), [2, 32]),
      t(B0.replace("layers.0", "layers.1").replace("q_proj", "v_proj"), [16, 2]),
    ],
    file: "adapter_model.safetensors",
    // Layer-major order: layer 0's v_proj is the first pair missing.
    problem: /'base_model\.model\.model\.layers\.0\.self_attn\.v_proj\.lora_A\.weight' is missing/,
  },
  {
    name: "no tensors at all",
    config: CONFIG,
    tensors: [],
    file: "adapter_model.safetensors",
    problem: /holds no LoRA tensors/,
  },
  {
    name: "a tensor that is not a LoRA weight",
    config: CONFIG,
    tensors: [...GOOD, t("base_model.model.lm_head.weight", [256, 32])],
    file: "adapter_model.safetensors",
    problem: /'base_model\.model\.lm_head\.weight' is not a LoRA weight of a decoder layer/,
  },
];

for (const c of BAD) {
  Deno.test(`readAdapter: ${c.name} is an AdapterError naming ${c.file} and the problem`, async () => {
    const dir = await craft(c.config, c.tensors);
    await assert.rejects(readAdapter(dir, tiny), (e) => {
      assert.ok(e instanceof AdapterError, `${e}`);
      assert.ok(e.message.includes(join(dir, c.file)), e.message);
      assert.match(e.message, c.problem);
      return true;
    });
  });
}

// ---- scoring with an adapter from disk equals scoring with the parameters in memory ----

Deno.test("score --adapter DIR gives the logprobs of the in-memory parameters, unlike the base model", async () => {
  const model = await loadModel(TINY);
  const lora: LoraConfig = { rank: 4, alpha: 8, rslora: false, targets: TARGET_MODULES, layers: [0, 2] };
  const params = randomParams(lora, 11);
  const rows = await tinyRows("test");
  const data = await tempJsonl(tmp, "tiny-test.jsonl", rows);

  const session = await model.session(buildScoringGraph(model.config, model.weights, { config: lora }), {
    providers: ["cpu"],
  });
  const memory = await new Scorer(session, model.tokenizer, { adapterInputs: params }).multipleChoice(rows);
  await session.release();

  const dir = freshDir();
  await writeAdapter(dir, lora, params);
  const args = ["score", "--model", TINY, "--data", data, "--device", "cpu", "--json"];
  const disk = await flexoraJson(...args, "--adapter", dir) as unknown as typeof memory;
  const base = await flexoraJson(...args) as unknown as typeof memory;

  assert.equal(disk.rows.length, rows.length);
  let changed = 0;
  disk.rows.forEach((r, i) => {
    assert.equal(r.logprobs.length, memory.rows[i].logprobs.length);
    r.logprobs.forEach((lp, j) => {
      const want = memory.rows[i].logprobs[j];
      assert.ok(Math.abs(lp - want) <= 1e-6, `row ${i} choice ${j}: from disk ${lp}, in memory ${want}`);
      changed = Math.max(changed, Math.abs(lp - base.rows[i].logprobs[j]));
    });
    assert.equal(r.pred, memory.rows[i].pred);
  });
  assert.equal(disk.accuracy, memory.accuracy);
  assert.ok(changed > 1e-3, `the adapter moved no logprob by more than 1e-3 (at most ${changed})`);
});

/** Names of the entries of `dir`, sorted. */
async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/**
 * Base weights of a float16 model, on the project's fixtures: BF16 and F32 checkpoints become one float16 copy
 * file in the weight cache (the checkpoint files are then not read for the session), an F16 checkpoint is used from its
 * file as it is, and a weight float16 cannot hold is an error naming it.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { buildStepGraph } from "../../src/model/graphs.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { openCheckpoint, readTensorF32, writeSafetensors } from "../../src/model/safetensors.ts";
import { FLOAT16_COPY } from "../../src/model/weights.ts";
import { type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { ROOT } from "./shared.ts";

const TINY = join(ROOT, "fixtures/tiny-llama");
const BF16 = join(ROOT, "fixtures/tiny-llama-bf16-sharded");
const IDS = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48];
const tmp = await Deno.makeTempDir({ prefix: "flexora-f16-" });
addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

/** Logits [V] after `IDS` (one prefill run) and the locations the session's weights were read from. */
async function logits(model: Model): Promise<{ logits: Float32Array; locations: string[] }> {
  const built = buildStepGraph(model.config, model.weights);
  const session = await model.session(built);
  const cfg = model.config, empty = hostTensor(model.dtype, [1, cfg.numKvHeads, 0, cfg.headDim]);
  const feeds: Record<string, HostTensor> = {
    input_ids: hostTensor("int64", [1, IDS.length], IDS),
    position_ids: hostTensor("int64", [1, IDS.length], IDS.map((_, i) => i)),
    attention_mask: hostTensor("int64", [1, IDS.length], IDS.map(() => 1)),
    last_index: hostTensor("int64", [1], [IDS.length - 1]),
  };
  for (let l = 0; l < cfg.numLayers; l++) {
    feeds[`past_key_values.${l}.key`] = feeds[`past_key_values.${l}.value`] = empty;
  }
  const out = (await session.run(feeds, ["logits"])).logits.data as Float32Array;
  await session.release();
  const external = built.graph.initializers.flatMap((v) =>
    v.init?.kind === "external" ? [v.init.location] : []
  );
  return { logits: out, locations: [...new Set(external)] };
}

/** A copy of the tiny fixture with every tensor stored as `dtype`, and `patch` applied to the float32 values. */
async function copyOfTiny(
  name: string,
  dtype: "F32" | "F16",
  patch: (t: Map<string, Float32Array>) => void = () => {},
): Promise<string> {
  const dir = join(tmp, name);
  await Deno.mkdir(dir);
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    await Deno.copyFile(join(TINY, f), join(dir, f));
  }
  const ckpt = await openCheckpoint(TINY);
  const values = new Map<string, Float32Array>();
  for (const [n, info] of ckpt.tensors) values.set(n, await readTensorF32(info));
  patch(values);
  await writeSafetensors(
    join(dir, "model.safetensors"),
    [...values].map(([n, data]) => ({ name: n, dtype, shape: ckpt.get(n).shape, data })),
  );
  return dir;
}

function relMax(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) {
    (d = Math.max(d, Math.abs(a[i] - b[i]))), (m = Math.max(m, Math.abs(b[i])));
  }
  return d / m;
}

Deno.test("a sharded BF16 checkpoint loads into float16: its weights come from one float16 copy file", async () => {
  const half = await loadModel(BF16, { dtype: "float16" });
  const { graph } = buildStepGraph(half.config, half.weights);
  const weights = graph.initializers.filter((v) => v.init?.kind === "external");
  assert.ok(weights.length > 0);
  for (const v of weights) {
    assert.equal(v.dtype, "float16", v.name);
    assert.equal(v.init?.kind === "external" && v.init.location, FLOAT16_COPY, v.name);
  }
  assert.ok(!graph.nodes.some((n) => n.op === "Cast" && weights.includes(n.inputs[0])), "no weight is cast");
  const [a, b] = [await logits(half), await logits(await loadModel(BF16))];
  assert.deepEqual(a.locations, [FLOAT16_COPY]); // the two shards are not read for this session
  assert.deepEqual(b.locations.sort(), half.weights.checkpoint.files.map((f) => f.split("/").at(-1)).sort());
  const err = relMax(a.logits, b.logits);
  console.log(
    `BF16 fixture, float16 vs float32 logits: max difference ${err.toExponential(2)} of the largest`,
  );
  assert.ok(err <= 1e-2, `relative difference ${err}`);
});

Deno.test("an F16 checkpoint computes in float16 from its own file, as its F32 original converted to a copy", async () => {
  const dir = await copyOfTiny("f16", "F16");
  const fromFile = await loadModel(dir, { dtype: "float16" });
  const { graph } = buildStepGraph(fromFile.config, fromFile.weights);
  for (const v of graph.initializers.filter((v) => v.init?.kind === "external")) {
    assert.equal(v.init?.kind === "external" && v.init.location, "model.safetensors", v.name);
  }
  const [a, b] = [await logits(fromFile), await logits(await loadModel(TINY, { dtype: "float16" }))];
  assert.deepEqual(a.locations, ["model.safetensors"]);
  assert.deepEqual(b.locations, [FLOAT16_COPY]);
  assert.deepEqual(a.logits, b.logits); // the same float16 bits, so the same numbers
});

Deno.test("a weight past float16's range is an error naming it; in float32 the model still runs", async () => {
  const dir = await copyOfTiny(
    "wide",
    "F32",
    (t) => (t.get("model.layers.1.mlp.up_proj.weight")![7] = 70000),
  );
  const half = await loadModel(dir, { dtype: "float16" });
  await assert.rejects(
    () => logits(half),
    /tensor 'model\.layers\.1\.mlp\.up_proj\.weight' holds 70000 \(element 7\), beyond float16's range/,
  );
  assert.equal((await logits(await loadModel(dir))).logits.length, 256);
});

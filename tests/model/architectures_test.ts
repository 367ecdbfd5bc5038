/**
 * Checkpoint formats (BF16, shards, untied head) and architectures (qwen2 biases, mistral sliding window,
 * Llama 3 RoPE scaling) on variants of the project's tiny fixture model.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { argmax, generate } from "../../src/model/generate.ts";
import { buildStepGraph } from "../../src/model/graphs.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { inverseFrequencies } from "../../src/model/rope.ts";
import { openCheckpoint, readTensorF32, writeSafetensors } from "../../src/model/safetensors.ts";
import { hostTensor } from "../../src/runtime/session.ts";
import { Rng } from "../../src/util/random.ts";
import { ROOT } from "./shared.ts";

const TINY = join(ROOT, "fixtures/tiny-llama");
const BF16 = join(ROOT, "fixtures/tiny-llama-bf16-sharded");

/**
 * Copies a fixture model to a temp dir as one F32 file, with config fields and tensors patched. `tensors` maps a
 * name to its new data (undefined deletes it); shapes of new tensors are given with `shapes`.
 */
async function variant(
  from: string,
  config: Record<string, unknown>,
  tensors: (read: Map<string, { shape: number[]; data: Float32Array }>) => void = () => {},
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "flexora-arch-" });
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    await Deno.copyFile(join(from, f), join(dir, f));
  }
  const json = JSON.parse(await Deno.readTextFile(join(from, "config.json")));
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ ...json, ...config }));
  const ckpt = await openCheckpoint(from);
  const read = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, info] of ckpt.tensors) {
    read.set(name, { shape: [...info.shape], data: await readTensorF32(info) });
  }
  tensors(read);
  await writeSafetensors(
    join(dir, "model.safetensors"),
    [...read].map(([name, t]) => ({ name, dtype: "F32" as const, shape: t.shape, data: t.data })),
  );
  return dir;
}

/** Logits after each prefix of `ids` (no cache): one run per position's last index. */
async function logitsAt(model: Model, ids: number[], position = ids.length - 1): Promise<Float32Array> {
  const session = await model.session(buildStepGraph(model.config, model.weights));
  const cfg = model.config, empty = hostTensor("float32", [1, cfg.numKvHeads, 0, cfg.headDim]);
  const feeds: Record<string, ReturnType<typeof hostTensor>> = {
    input_ids: hostTensor("int64", [1, ids.length], ids),
    position_ids: hostTensor("int64", [1, ids.length], ids.map((_, i) => i)),
    attention_mask: hostTensor("int64", [1, ids.length], ids.map(() => 1)),
    last_index: hostTensor("int64", [1], [position]),
  };
  for (let l = 0; l < cfg.numLayers; l++) {
    feeds[`past_key_values.${l}.key`] = empty;
    feeds[`past_key_values.${l}.value`] = empty;
  }
  const out = (await session.run(feeds, ["logits"])).logits.data as Float32Array;
  await session.release();
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const IDS = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48];

Deno.test("a BF16 checkpoint in two shards with an untied head equals its F32 single-file copy", async () => {
  const sharded = await loadModel(BF16);
  assert.equal(sharded.config.tieWordEmbeddings, false);
  assert.equal(sharded.weights.checkpoint.files.length, 2);
  const dir = await variant(BF16, {});
  try {
    const copy = await loadModel(dir);
    const a = await logitsAt(sharded, IDS), b = await logitsAt(copy, IDS);
    assert.ok(maxDiff(a, b) < 1e-5, `max difference ${maxDiff(a, b)}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qwen2: q/k/v biases are applied (zero biases equal the llama model; nonzero ones change it)", async () => {
  const base = await loadModel(TINY);
  const rng = new Rng(9);
  const biases = (scale: number) => (read: Map<string, { shape: number[]; data: Float32Array }>) => {
    for (let l = 0; l < base.config.numLayers; l++) {
      for (const m of ["q_proj", "k_proj", "v_proj"]) {
        const w = read.get(`model.layers.${l}.self_attn.${m}.weight`)!;
        read.set(`model.layers.${l}.self_attn.${m}.bias`, {
          shape: [w.shape[0]],
          data: Float32Array.from({ length: w.shape[0] }, () => scale * rng.uniform(-1, 1)),
        });
      }
    }
  };
  const zero = await variant(TINY, { model_type: "qwen2" }, biases(0));
  const some = await variant(TINY, { model_type: "qwen2" }, biases(0.5));
  try {
    const q0 = await loadModel(zero), q1 = await loadModel(some);
    assert.equal(q1.config.qkvBias, true);
    const ref = await logitsAt(base, IDS);
    assert.ok(maxDiff(await logitsAt(q0, IDS), ref) < 1e-5);
    assert.ok(maxDiff(await logitsAt(q1, IDS), ref) > 1e-2, "nonzero biases must change the logits");
    const session = await q1.session(buildStepGraph(q1.config, q1.weights));
    const cached = await generate(session, q1.config, IDS.slice(0, 4), { maxTokens: 5 });
    const seq = IDS.slice(0, 4);
    for (let i = 0; i < 5; i++) seq.push(argmax(await logitsAt(q1, seq)));
    assert.deepEqual(cached, seq.slice(4));
  } finally {
    await Deno.remove(zero, { recursive: true });
    await Deno.remove(some, { recursive: true });
  }
});

Deno.test("qwen2: a missing bias tensor is an error naming the tensor", async () => {
  const dir = await variant(TINY, { model_type: "qwen2" });
  try {
    const model = await loadModel(dir);
    assert.throws(
      () => buildStepGraph(model.config, model.weights),
      /model\.layers\.0\.self_attn\.q_proj\.bias/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mistral: with a sliding window of 2 over 3 layers, the last logits ignore tokens more than 3 back", async () => {
  const windowed = await variant(TINY, { model_type: "mistral", sliding_window: 2 });
  try {
    const mistral = await loadModel(windowed), llama = await loadModel(TINY);
    assert.equal(mistral.config.slidingWindow, 2);
    // Receptive field of the last position: itself plus (W − 1) per layer = 4 tokens.
    const changedFar = [...IDS];
    changedFar[2] = 99; // 7 positions before the last
    const changedNear = [...IDS];
    changedNear[IDS.length - 3] = 99;
    const base = await logitsAt(mistral, IDS);
    assert.ok(
      maxDiff(base, await logitsAt(mistral, changedFar)) < 1e-6,
      "a token outside the window leaked in",
    );
    assert.ok(
      maxDiff(base, await logitsAt(mistral, changedNear)) > 1e-4,
      "a token inside the window had no effect",
    );
    assert.ok(maxDiff(await logitsAt(llama, IDS), await logitsAt(llama, changedFar)) > 1e-4);
    // The cache applies the same window once past tokens outnumber it.
    const session = await mistral.session(buildStepGraph(mistral.config, mistral.weights));
    const cached = await generate(session, mistral.config, IDS.slice(0, 3), { maxTokens: 6 });
    const seq = IDS.slice(0, 3);
    for (let i = 0; i < 6; i++) seq.push(argmax(await logitsAt(mistral, seq)));
    assert.deepEqual(cached, seq.slice(3));
  } finally {
    await Deno.remove(windowed, { recursive: true });
  }
});

Deno.test("llama3 RoPE scaling keeps high frequencies, divides low ones by the factor, and interpolates between", async () => {
  const base = await loadModel(TINY);
  const cfg = {
    ...base.config,
    headDim: 128,
    ropeTheta: 500000,
    ropeScaling: {
      type: "llama3" as const,
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    },
  };
  const scaled = inverseFrequencies(cfg), plain = inverseFrequencies({ ...cfg, ropeScaling: null });
  let high = 0, low = 0, medium = 0;
  plain.forEach((f, i) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < 8192 / 4) high += Number(Math.abs(scaled[i] - f) <= 1e-7 * f);
    else if (wavelen > 8192) low += Number(Math.abs(scaled[i] - f / 8) <= 1e-7 * f);
    else medium += Number(scaled[i] < f && scaled[i] > f / 8);
  });
  assert.equal(high + low + medium, 64, "every frequency falls in one band and follows its rule");
  assert.ok(high > 0 && low > 0 && medium > 0, `bands ${high}/${medium}/${low}`);
});

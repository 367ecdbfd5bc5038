/**
 * `baseDtype` (`--base-dtype`): an F32 checkpoint's frozen weights stored as one 16-bit copy (a file in the
 * weight cache, memory-mapped by onnxruntime) and cast to float32 in the graph right before use, against the same
 * model stored in float32 (stories260K, computing in float32), and against the same weights stored as a BF16
 * checkpoint.
 *
 * Tolerances (measured by these tests and printed when they run), over 2,357 tokens of 32 story-object rows:
 * bf16 log-likelihoods differ from float32's by about 1e-2 on average and 1e-1 at most (bounds 3e-2 and 3e-1;
 * bfloat16 keeps 8 significant bits), f16 by about 1e-3 and 1e-2 (bounds 5e-3 and 5e-2). The Flexora search on
 * a story task selects the same layers with bf16 base weights as with float32 ones.
 *
 * The LM head casts a 16-bit weight one vocabulary slice at a time (`src/model/lm_head.ts`): with slices smaller
 * than the vocabulary (`headSlice`), loss, gradients and log-probabilities equal float32's on the bf16-rounded
 * weights (stories260K and the tiny fixture), and no float32 copy of the whole [V, D] weight is made.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../src/data/dataset.ts";
import { batchFeeds } from "../../src/data/sequence.ts";
import type { FinetuneInput } from "../../src/flexora/options.ts";
import { loadStage, prepareStage, searchStage, selectStage } from "../../src/flexora/stages.ts";
import { buildScoringGraph, GATE_LOGITS } from "../../src/model/graphs.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { validateLora } from "../../src/model/lora.ts";
import {
  openCheckpoint,
  readTensorF32,
  type TensorToWrite,
  writeSafetensors,
} from "../../src/model/safetensors.ts";
import type { BaseDtype } from "../../src/model/weights.ts";
import { DATA, ROOT, STORIES } from "./shared.ts";
import { buildLoraGradGraph, buildLoraTrainStep } from "../../src/flexora/train_graphs.ts";
import { type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import type { Graph } from "../../src/graph/graph.ts";
import type { BuiltGraph } from "../../src/model/graphs.ts";
import { adamw } from "../../src/train/optim.ts";
import { bf16ToF32, f32ToBf16 } from "../../src/util/float16.ts";
import { nonzeroLora } from "./random_lora.ts";

const m32 = await loadModel(STORIES);
const cfg = m32.config;
const rows = (await Deno.readTextFile(join(DATA, "story-object", "test.jsonl"))).trim().split("\n").slice(
  0,
  32,
)
  .map((l) => JSON.parse(l) as { prompt: string; completion: string });
const tmp = await Deno.makeTempDir({ prefix: "flexora-base-dtype-" });
addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

async function logprobs(m: Model): Promise<{ lp: Float32Array; targets: BigInt64Array }> {
  const seqs = rows.map((r) => ({ ids: m.tokenizer.encode(r.prompt + r.completion) }));
  const { labels, ...feeds } = batchFeeds(seqs);
  const session = await m.session(buildScoringGraph(cfg, m.weights));
  const out = await session.run({ ...feeds, targets: labels });
  await session.release();
  return { lp: out.token_logprobs.data as Float32Array, targets: labels.data as BigInt64Array };
}

const wide = await logprobs(m32);

for (const [base, meanBound, maxBound] of [["bf16", 3e-2, 3e-1], ["f16", 5e-3, 5e-2]] as const) {
  Deno.test(`stories260K base weights ${base}: log-likelihoods within ${maxBound} of float32 (mean ${meanBound})`, async () => {
    const m = await loadModel(STORIES, { baseDtype: base });
    assert.equal(m.dtype, "float32");
    const { lp } = await logprobs(m);
    const diffs = Array.from(wide.lp, (w, i) => Math.abs(lp[i] - w)).filter((_, i) => wide.targets[i] >= 0n);
    const max = Math.max(...diffs), mean = diffs.reduce((a, b) => a + b) / diffs.length;
    console.log(
      `|log p(${base}) − log p(f32)| over ${diffs.length} tokens: mean ${mean.toExponential(2)}, max ${
        max.toExponential(2)
      }`,
    );
    assert.ok(diffs.length > 2000 && max <= maxBound && mean <= meanBound, `mean ${mean}, max ${max}`);
    assert.ok(mean > 0, "the 16-bit copy changes the weights (the option is not ignored)");
  });
}

Deno.test("base weights bf16: 16-bit initializers from one copy, each cast to float32 right before its use; LoRA and gates float32", () => {
  return loadModel(STORIES, { baseDtype: "bf16" }).then((m) => {
    const lora = validateLora(cfg, { rank: 4, alpha: 8, rslora: false, targets: ["q_proj"], layers: [0, 1] });
    const { graph } = buildScoringGraph(cfg, m.weights, { config: lora, gated: true });
    const external = graph.initializers.filter((v) => v.init?.kind === "external");
    assert.ok(external.length > 0);
    for (const v of external) {
      assert.equal(v.dtype, "bfloat16", v.name);
      assert.equal(v.init?.kind === "external" && v.init.location, "flexora.bfloat16.bin", v.name);
    }
    // Only casts compute with 16-bit values: Gather, Slice (the LM head's vocabulary slices) and Unsqueeze just
    // pick from them.
    const readers = graph.nodes.filter((n) => n.inputs.some((v) => v.dtype === "bfloat16"));
    assert.deepEqual([...new Set(readers.map((n) => n.op))].sort(), ["Cast", "Gather", "Slice", "Unsqueeze"]);
    // The embedding's Gather reads the 16-bit table and the rows it picks are cast, not the table; a projection's
    // weight is cast once the projection's input is there (a copy of it made after that input: Gather at an
    // index read from its shape), so that onnxruntime cannot cast every layer's weights at the start.
    const copies = readers.filter((n) => n.op === "Gather" && n.inputs[0].producer?.op === "Unsqueeze");
    const copied = new Set(copies.map((n) => n.inputs[0].producer!.inputs[0].name));
    for (const l of [0, 1, 2, 3, 4]) {
      assert.ok(copied.has(`model.layers.${l}.mlp.down_proj.weight`), String(l));
    }
    const rows = readers.filter((n) => n.op === "Gather" && n.inputs[0].name === "model.embed_tokens.weight");
    assert.equal(rows.length, 1);
    assert.ok(
      !graph.nodes.some((n) => n.op === "Cast" && n.inputs[0].name === "model.layers.0.mlp.up_proj.weight"),
    );
    for (const v of graph.inputs.filter((v) => v.name.includes("lora") || v.name === GATE_LOGITS)) {
      assert.equal(v.dtype, "float32", v.name);
    }
  });
});

/**
 * stories260K's tensors (or those of the model in `source`) written as a checkpoint of its own, each tensor in the
 * dtype `dtypeOf` gives it, its values passed through `values` first.
 */
async function storiesAs(
  name: string,
  dtypeOf: (tensor: string) => TensorToWrite["dtype"],
  values: (x: Float32Array) => Float32Array = (x) => x,
  source = STORIES,
): Promise<string> {
  const dir = join(tmp, name);
  await Deno.mkdir(dir);
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    await Deno.copyFile(join(source, f), join(dir, f));
  }
  const tensors = [];
  for (const [n, info] of (await openCheckpoint(source)).tensors) {
    tensors.push({ name: n, dtype: dtypeOf(n), shape: info.shape, data: values(await readTensorF32(info)) });
  }
  await writeSafetensors(join(dir, "model.safetensors"), tensors);
  return dir;
}

Deno.test("base weights bf16: the copy is a file in the weight cache that sessions map, written once, never bytes", async () => {
  const cache = join(tmp, "cache-once");
  const m = await loadModel(STORIES, { baseDtype: "bf16", weightCacheDir: cache });
  const { graph } = buildScoringGraph(cfg, m.weights);
  const data = await m.weights.sessionData(graph);
  assert.equal(data.externalData, undefined, "no bytes are handed to onnxruntime");
  const file = await m.weights.copyFile();
  assert.ok(file !== null && file.startsWith(cache + "/"), String(file));
  assert.equal(join(data.externalDataFolder!, "flexora.bfloat16.bin"), file);
  const params = [...m32.weights.checkpoint.tensors.values()].reduce((n, t) => n + t.length / 4, 0);
  const { size, mtime } = await Deno.stat(file);
  assert.ok(size >= 2 * params && size < 2 * params + 64 * m32.weights.checkpoint.tensors.size, `${size} B`);
  assert.deepEqual([...Deno.readDirSync(data.externalDataFolder!)].map((e) => e.name), [
    "flexora.bfloat16.bin",
  ]);
  const again = await loadModel(STORIES, { baseDtype: "bf16", weightCacheDir: cache });
  await (await again.session(buildScoringGraph(cfg, again.weights))).release();
  assert.equal(await again.weights.copyFile(), file);
  assert.deepEqual((await Deno.stat(file)).mtime, mtime, "the second store reads the cached copy");
  const f16 = await loadModel(STORIES, { baseDtype: "f16", weightCacheDir: cache });
  assert.notEqual(await f16.weights.copyFile(), file, "one copy per type");
});

Deno.test("base weights bf16 from the copy file give the same log-likelihoods as the weights stored as a BF16 checkpoint, mixed or not", async () => {
  const cache = join(tmp, "cache-same");
  const copied = await logprobs(await loadModel(STORIES, { baseDtype: "bf16", weightCacheDir: cache }));
  const bf16 = await loadModel(await storiesAs("bf16", () => "BF16"), { weightCacheDir: cache });
  assert.equal(await bf16.weights.copyFile(), null, "a BF16 checkpoint is read as it is");
  assert.deepEqual((await logprobs(bf16)).lp, copied.lp);
  // Norms in F32, matrices in BF16: with base weights bf16 every weight comes from one copy, in one folder.
  const mixed = await loadModel(await storiesAs("mixed", (n) => n.includes("norm") ? "F32" : "BF16"), {
    baseDtype: "bf16",
    weightCacheDir: cache,
  });
  const { graph } = buildScoringGraph(cfg, mixed.weights);
  const locations = new Set(graph.initializers.map((v) => v.init?.kind === "external" && v.init.location));
  assert.deepEqual([...locations].filter(Boolean), ["flexora.bfloat16.bin"]);
  assert.deepEqual((await logprobs(mixed)).lp, copied.lp);
});

Deno.test("base weights bf16: loss, LoRA and gate gradients equal float32's on the bf16-rounded weights; the backward casts each weight itself", async () => {
  const rounded = await loadModel(await storiesAs("rounded", () => "F32", (x) => bf16ToF32(f32ToBf16(x))));
  const bf16 = await loadModel(STORIES, { baseDtype: "bf16", weightCacheDir: join(tmp, "cache-grad") });
  const lora = validateLora(cfg, {
    rank: 4,
    alpha: 8,
    rslora: false,
    targets: ["q_proj", "down_proj"],
    layers: [1, 3],
  });
  const adapter = { config: lora, gated: true };
  const seqs = [0, 1, 2].map((b) => ({
    ids: Array.from({ length: 14 - 3 * b }, (_, t) => 5 + ((7 * t + 11 * b) % 500)),
  }));
  const feeds = {
    ...batchFeeds(seqs, 0),
    ...nonzeroLora(cfg, lora, { seed: 2, range: 0.1 }),
    [GATE_LOGITS]: hostTensor("float32", [cfg.numLayers], [0.3, -0.2, 0.1, 0.4, -0.5]),
  };
  const run = async (m: Model, recompute?: boolean) => {
    const built = buildLoraGradGraph(cfg, m.weights, adapter, { recompute });
    const session = await m.session(built);
    const out = await session.run(feeds);
    await session.release();
    return { graph: built.graph, out };
  };
  const reference = (await run(rounded)).out;
  for (const recompute of [false, true]) {
    const { graph, out } = await run(bf16, recompute);
    // A weight's forward cast is read by forward nodes only; the backward makes its own from the 16-bit copy.
    const casts = graph.nodes.filter((n) => n.op === "Cast" && n.inputs[0].init?.kind === "external");
    const forward = new Set(casts.map((n) => n.outputs[0]));
    assert.ok(casts.length > 0);
    const late = graph.nodes.filter((n) => n.name.includes("grad(") && n.inputs.some((v) => forward.has(v)));
    assert.deepEqual(late.map((n) => n.name), [], `recompute ${recompute}`);
    for (const name of Object.keys(reference)) {
      const [a, b] = [reference[name].data as Float32Array, out[name].data as Float32Array];
      const d = Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
      assert.ok(d <= 1e-5, `${name} differs by ${d} (recompute ${recompute})`);
    }
  }
});

const TINY = join(ROOT, "fixtures/tiny-llama");
const round = (x: Float32Array) => bf16ToF32(f32ToBf16(x));

/** The outputs of `built` on `feeds` in a session of `m`. */
async function runGraph(m: Model, built: BuiltGraph, feeds: Record<string, HostTensor>) {
  const session = await m.session(built);
  const out = await session.run(feeds);
  await session.release();
  return out;
}

/** The largest difference between two outputs' elements. */
function maxDiff(a: HostTensor, b: HostTensor): number {
  return Math.max(...Array.from(a.data as Float32Array, (v, i) => Math.abs(v - (b.data[i] as number))));
}

for (
  const [name, source, layers] of [["stories260K", STORIES, [1, 3]], ["tiny fixture", TINY, [0, 2]]] as const
) {
  Deno.test(`base weights bf16 (${name}): the LM head cast in vocabulary slices gives float32's loss, LoRA gradients and log-probabilities on the bf16-rounded weights`, async () => {
    const rounded = await loadModel(await storiesAs(`head-${name}`, () => "F32", round, source));
    const bf16 = await loadModel(source, { baseDtype: "bf16", weightCacheDir: join(tmp, "cache-head") });
    const c = bf16.config;
    const lora = validateLora(c, {
      rank: 4,
      alpha: 8,
      rslora: false,
      targets: ["q_proj", "down_proj"],
      layers,
    });
    const seqs = [0, 1, 2].map((b) => ({
      ids: Array.from({ length: 14 - 3 * b }, (_, t) => 5 + ((7 * t + 11 * b) % (c.vocabSize - 5))),
    }));
    const { labels, ...tokens } = batchFeeds(seqs, 0);
    const feeds = { ...tokens, labels, ...nonzeroLora(c, lora, { seed: 2, range: 0.1 }) };
    const grads = (m: Model, options = {}) =>
      runGraph(m, buildLoraGradGraph(c, m.weights, { config: lora }, options), feeds);
    const score = (m: Model, options = {}) =>
      runGraph(m, buildScoringGraph(c, m.weights, undefined, options), { ...tokens, targets: labels });
    // The reference: float32 weights, today's head (one product with the weight as it is stored).
    const reference = await grads(rounded);
    const lp = (await score(rounded)).token_logprobs;
    // Slices of 100 rows (the last one shorter); the tokens in one block, or in 4 (chunk 64) or 2 (chunk 128).
    for (const [headSlice, vocabChunk] of [[100, undefined], [100, 64], [c.vocabSize, 128]]) {
      const out = await grads(bf16, { headSlice, vocabChunk });
      assert.deepEqual(Object.keys(out).sort(), Object.keys(reference).sort());
      for (const k of Object.keys(reference)) {
        const d = maxDiff(reference[k], out[k]);
        assert.ok(d <= 1e-5, `${k} differs by ${d} (slice ${headSlice}, chunk ${vocabChunk})`);
      }
      const d = maxDiff(lp, (await score(bf16, { headSlice, vocabChunk })).token_logprobs);
      assert.ok(d <= 1e-5, `log-probabilities differ by ${d} (slice ${headSlice}, chunk ${vocabChunk})`);
    }
  });
}

Deno.test("base weights bf16: no float32 copy of the whole LM-head weight [V, D] in the train and scoring graphs; float32 weights keep one product per block", async () => {
  const bf16 = await loadModel(STORIES, { baseDtype: "bf16", weightCacheDir: join(tmp, "cache-head") });
  const lora = validateLora(cfg, { rank: 4, alpha: 8, rslora: false, targets: ["q_proj"], layers: [4] });
  const [V, D] = [cfg.vocabSize, cfg.hiddenSize];
  const headSlice = 128, slices = V / headSlice;
  const graphs = (m: Model) => ({
    step: buildLoraTrainStep(cfg, m.weights, { config: lora }, adamw(), { headSlice, vocabChunk: 128 }).graph,
    grad: buildLoraGradGraph(cfg, m.weights, { config: lora }, { headSlice }).graph,
    score: buildScoringGraph(cfg, m.weights, undefined, { headSlice, vocabChunk: 256 }).graph,
  });
  const head = "model.embed_tokens.weight";
  // Each block's forward and backward each cast every slice of the head once: the training step's 4 blocks
  // (chunk 128) 2 · 4 · 4 slices, the gradient graph's one block 2 · 4, scoring's 2 blocks (chunk 256) 2 · 4.
  const expected = { step: 2 * 4 * slices, grad: 2 * slices, score: 2 * slices };
  for (const [kind, graph] of Object.entries(graphs(bf16)) as [keyof typeof expected, Graph][]) {
    const whole = graph.nodes.flatMap((n) => n.outputs).filter((v) => v.shape.join() === `${V},${D}`);
    assert.deepEqual(whole.map((v) => `${v.name}: ${v.dtype}`), [], kind); // the initializer is no node's output
    const cut = graph.nodes.filter((n) => n.op === "Slice" && n.inputs[0].name === head);
    assert.equal(cut.length, expected[kind], kind);
    for (const n of cut) {
      assert.deepEqual(n.outputs[0].shape, [headSlice, D], kind);
      assert.ok(n.inputs[1].producer, `${kind}: a slice's start is computed (it waits for its input)`);
    }
  }
  // float32 weights: the head's products read the weight as it is stored (no slice, no cast), the training
  // step's 4 blocks a product each in the forward (after a Transpose) and in the backward; the gradient graph's
  // one block is the fused op (autodiff's product reads the Transpose); scoring's 2 blocks, forward only.
  const per = { step: ["Transpose", "MatMul"], grad: ["Transpose"], score: ["Transpose"] };
  const blocks = { step: 4, grad: 1, score: 2 };
  for (const [kind, graph] of Object.entries(graphs(m32)) as [keyof typeof per, Graph][]) {
    const readers = graph.nodes.filter((n) => n.inputs.some((v) => v.name === head)).map((n) => n.op);
    assert.deepEqual(readers, ["Gather", ...Array(blocks[kind]).fill(per[kind]).flat()], kind);
  }
});

Deno.test("base weights f32 on an F32 checkpoint, and no base dtype, point into the checkpoint file (no copy)", async () => {
  for (const baseDtype of [undefined, "f32"] as const) {
    const m = await loadModel(STORIES, { baseDtype });
    const { graph } = buildScoringGraph(cfg, m.weights);
    for (const v of graph.initializers.filter((v) => v.init?.kind === "external")) {
      assert.equal(v.dtype, "float32", v.name);
      assert.equal(v.init?.kind === "external" && v.init.location, "model.safetensors", v.name);
    }
    assert.deepEqual(Object.keys((await m.weights.sessionData(graph)).externalData ?? {}), []);
  }
});

Deno.test("an unknown base dtype is an error naming it; a weight past float16's range names the tensor", async () => {
  await assert.rejects(
    () => loadModel(STORIES, { baseDtype: "fp8" as BaseDtype }),
    /'baseDtype' must be bf16, f16 or f32, got "fp8"/,
  );
  const dir = join(tmp, "wide");
  await Deno.mkdir(dir);
  const tiny = join(ROOT, "fixtures/tiny-llama");
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    await Deno.copyFile(join(tiny, f), join(dir, f));
  }
  const ckpt = await openCheckpoint(tiny);
  const values = new Map<string, Float32Array>();
  for (const [n, info] of ckpt.tensors) values.set(n, await readTensorF32(info));
  values.get("model.layers.1.mlp.up_proj.weight")![7] = 70000;
  await writeSafetensors(
    join(dir, "model.safetensors"),
    [...values].map(([n, data]) => ({ name: n, dtype: "F32" as const, shape: ckpt.get(n).shape, data })),
  );
  const m = await loadModel(dir, { baseDtype: "f16" });
  await assert.rejects(
    () => m.session(buildScoringGraph(m.config, m.weights)),
    /tensor 'model\.layers\.1\.mlp\.up_proj\.weight' holds 70000 \(element 7\), beyond float16's range.*bf16 or f32/,
  );
  const b = await loadModel(dir, { baseDtype: "bf16" }); // bfloat16 has float32's range
  await (await b.session(buildScoringGraph(b.config, b.weights))).release();
});

Deno.test("the Flexora search on story-object (stories260K) selects the same layers with bf16 base weights", async () => {
  const full = await loadDataset(join(DATA, "story-object"));
  const data = { ...full, train: full.train.slice(0, 256), validation: full.validation!.slice(0, 32) };
  const input: FinetuneInput = {
    search: { loraLr: 1e-2, gateLr: 0.05, epochs: 1, lora: { targets: ["q_proj", "v_proj", "down_proj"] } },
    select: "top-k:2",
    maxLength: 128,
    checkpointEvery: 0,
  };
  const run = async (baseDtype?: BaseDtype) => {
    const loaded = await loadStage(STORIES, { ...input, baseDtype });
    const prepared = await prepareStage(loaded, data);
    const searched = await searchStage(loaded, prepared);
    return { gates: searched!.gates, layers: selectStage(loaded, searched).layers };
  };
  const [f32, bf16] = [await run(), await run("bf16")];
  console.log(`gates f32 ${f32.gates.map((g) => g.toFixed(4))}; bf16 ${bf16.gates.map((g) => g.toFixed(4))}`);
  assert.deepEqual(bf16.layers, f32.layers);
});

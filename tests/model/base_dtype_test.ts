/**
 * `baseDtype` (`--base-dtype`): an F32 checkpoint's frozen weights stored as one 16-bit copy in memory and cast
 * to float32 in the graph right before use, against the same model stored in float32 (stories260K, computing in
 * float32).
 *
 * Tolerances (measured by these tests and printed when they run), over 2,357 tokens of 32 story-object rows:
 * bf16 log-likelihoods differ from float32's by about 1e-2 on average and 1e-1 at most (bounds 3e-2 and 3e-1;
 * bfloat16 keeps 8 significant bits), f16 by about 1e-3 and 1e-2 (bounds 5e-3 and 5e-2). The Flexora search on
 * a story task selects the same layers with bf16 base weights as with float32 ones.
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
import { openCheckpoint, readTensorF32, writeSafetensors } from "../../src/model/safetensors.ts";
import type { BaseDtype } from "../../src/model/weights.ts";
import { DATA, ROOT, STORIES } from "./shared.ts";

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

Deno.test("base weights bf16: 16-bit initializers from one in-memory copy, cast to float32 before use; LoRA and gates float32", () => {
  return loadModel(STORIES, { baseDtype: "bf16" }).then((m) => {
    const lora = validateLora(cfg, { rank: 4, alpha: 8, rslora: false, targets: ["q_proj"], layers: [0, 1] });
    const { graph } = buildScoringGraph(cfg, m.weights, { config: lora, gated: true });
    const external = graph.initializers.filter((v) => v.init?.kind === "external");
    assert.ok(external.length > 0);
    for (const v of external) {
      assert.equal(v.dtype, "bfloat16", v.name);
      assert.equal(v.init?.kind === "external" && v.init.location, "flexora.bfloat16.bin", v.name);
    }
    const casts = graph.nodes.filter((n) => n.op === "Cast" && n.inputs[0].dtype === "bfloat16");
    assert.equal(casts.length, external.length, "one Cast per weight, in the graph");
    for (const v of graph.inputs.filter((v) => v.name.includes("lora") || v.name === GATE_LOGITS)) {
      assert.equal(v.dtype, "float32", v.name);
    }
  });
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

/**
 * flexora's engine against llama.cpp on the same weights: stories260K and a Flexora adapter trained on it are
 * exported to GGUF, loaded by llama.cpp (node-llama-cpp's prebuilt CPU build, run under Node.js), and both
 * engines are given the same token ids. Next-token log-probabilities after every token of several prompts must
 * agree within 1e-3 in F32, greedy generation of 32 tokens must be identical, and llama.cpp must tokenize the
 * prompts as flexora does. Qwen2 (q/k/v biases, NeoX RoPE) and Llama 3 RoPE scaling run on variants of the model.
 *
 * node-llama-cpp is installed by npm in tools/llamacpp (see `INSTALL`); without it these tests fail under CI
 * (CI=true) and are ignored elsewhere.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { finetune } from "../../src/flexora/pipeline.ts";
import { exportAdapterGguf } from "../../src/export/gguf/adapter.ts";
import { exportModelGguf } from "../../src/export/gguf/model.ts";
import { generate } from "../../src/model/generate.ts";
import { buildStepGraph } from "../../src/model/graphs.ts";
import { type LoraConfig, TARGET_MODULES } from "../../src/model/lora.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { type Adapter, readAdapter } from "../../src/model/peft.ts";
import { DATA, STORIES } from "../model/shared.ts";
import {
  engineLogits,
  INSTALL,
  llamaCppInstalled,
  type LlamaCppResult,
  maxLogprobDiff,
  runLlamaCpp,
} from "./llamacpp.ts";
import { qkvBiases, randomAdapter, storiesVariant, storySlice, tempDir } from "./variants.ts";

const installed = await llamaCppInstalled();
const required = Deno.env.get("CI") === "true";
if (!installed && !required) {
  console.warn(`llama.cpp parity tests ignored: node-llama-cpp missing (${INSTALL})`);
}

/** A parity test: ignored without node-llama-cpp outside CI, failing without it under CI. */
function parity(name: string, fn: () => Promise<void>) {
  Deno.test({
    name,
    ignore: !installed && !required,
    fn: installed ? fn : () => Promise.reject(new Error(`node-llama-cpp is not installed; run: ${INSTALL}`)),
  });
}

const tmp = await tempDir("flexora-gguf-parity-");
const GOLDEN =
  ("403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 " +
    "292 411 322 265 282 295 433 426 385").split(" ").map(Number);

/** Prompt texts: the README's golden sentence and story-object test rows (newlines exercise byte fallback). */
const TEXTS = [
  "Once upon a time, there was a little girl named Lily.",
  ...(await Deno.readTextFile(join(DATA, "story-object", "test.jsonl"))).split("\n").slice(0, 4)
    .map((l) => JSON.parse(l)).map((r) => r.prompt + r.completion),
];

/** flexora's greedy continuation (no stop token, as llama.cpp's side does not stop either). */
async function oursGreedy(model: Model, prompt: number[], tokens: number, adapter?: Adapter) {
  const session = await model.session(
    buildStepGraph(model.config, model.weights, adapter ? { config: adapter.config } : undefined),
  );
  const out = await generate(session, model.config, prompt, {
    maxTokens: tokens,
    adapterInputs: adapter?.params,
  });
  await session.release();
  return out;
}

/** Runs llama.cpp on `gguf` (+ `lora`) over `seqs` and greedy from `prompt`; returns its answer and the Δ. */
async function compare(
  model: Model,
  gguf: string,
  seqs: number[][],
  options: {
    lora?: string;
    adapter?: Adapter;
    prompt?: number[];
    tokenize?: string[];
    ours?: Float32Array[][];
  } = {},
): Promise<{ theirs: LlamaCppResult; diff: number; greedy?: number[] }> {
  const prompt = options.prompt;
  const [theirs] = await runLlamaCpp([{
    model: gguf,
    lora: options.lora,
    vocab: model.config.vocabSize,
    sequences: seqs,
    generate: prompt ? { prompt, tokens: 32 } : undefined,
    tokenize: options.tokenize,
  }]);
  const ours = options.ours ?? await engineLogits(model, seqs, options.adapter);
  const diff = maxLogprobDiff(ours, theirs.logits);
  const greedy = prompt ? await oursGreedy(model, prompt, 32, options.adapter) : undefined;
  return { theirs, diff, greedy };
}

const stories = await loadModel(STORIES);
const SEQS = TEXTS.map((t) => stories.tokenizer.encode(t));
/** flexora's logits for SEQS on stories260K, computed once. */
let storiesLogits: Promise<Float32Array[][]> | undefined;
const baseLogits = () => storiesLogits ??= engineLogits(stories, SEQS);

parity(
  "stories260K as F32 GGUF: llama.cpp's log-probs, greedy tokens and tokenization equal flexora's",
  async () => {
    const gguf = join(tmp, "stories260K-f32.gguf");
    await exportModelGguf(STORIES, gguf, { dtype: "F32" });
    const { theirs, diff, greedy } = await compare(stories, gguf, SEQS, {
      prompt: [1],
      tokenize: TEXTS,
      ours: await baseLogits(),
    });
    console.log(
      `stories260K F32: max |Δ log p| = ${diff.toExponential(2)} over ${SEQS.flat().length} positions`,
    );
    assert.ok(diff <= 1e-3, `max |Δ log p| ${diff}`);
    assert.deepEqual(theirs.generated, GOLDEN);
    assert.deepEqual(greedy, GOLDEN);
    assert.deepEqual([theirs.bos, theirs.addBos], [1, true]);
    assert.deepEqual(
      theirs.tokens,
      TEXTS.map((t) => stories.tokenizer.encode(t, { addSpecialTokens: false })),
    );
  },
);

parity(
  "stories260K as F16 GGUF: llama.cpp's log-probs near flexora's on the same F16 weights, greedy tokens equal",
  async () => {
    const gguf = join(tmp, "stories260K-f16.gguf");
    await exportModelGguf(STORIES, gguf, { dtype: "F16" });
    const f16 = await loadModel(await storiesVariant(join(tmp, "stories-f16"), {}, {}, { matrices: "F16" }));
    const { theirs, diff } = await compare(f16, gguf, SEQS, { prompt: [1] });
    const vsF32 = maxLogprobDiff(await baseLogits(), theirs.logits);
    console.log(
      `stories260K F16: max |Δ log p| = ${diff.toExponential(2)} (against flexora on F32: ${
        vsF32.toExponential(2)
      })`,
    );
    assert.ok(diff <= 5e-2, `max |Δ log p| ${diff}`);
    assert.deepEqual(theirs.generated, GOLDEN);
  },
);

parity(
  "a trained Flexora adapter (rsLoRA) in llama.cpp: log-probs within 1e-3, greedy tokens equal",
  async () => {
    const data = await storySlice(join(tmp, "story-slice"), { train: 64, validation: 16, test: 16 });
    const lora = { rank: 4, alpha: 8, rslora: true, targets: [...TARGET_MODULES] };
    const out = join(tmp, "flexora-adapter");
    const result = await finetune(stories, data, {
      search: { loraLr: 1e-2, gateLr: 0.05, lora },
      retrain: { lr: 2e-2, epochs: 2, lora },
      maxLength: 96,
      checkpointEvery: 0,
    }, { out });
    const adapter = await readAdapter(out, stories.config);
    assert.equal(adapter.config.rslora, true);
    assert.deepEqual(adapter.config.layers, result.layers);
    const base = join(tmp, "stories260K-base.gguf"), lora32 = join(tmp, "flexora-adapter.gguf");
    await exportModelGguf(STORIES, base, { dtype: "F32" });
    await exportAdapterGguf(out, STORIES, lora32);
    const prompts = SEQS.slice(1);
    const adapted = await compare(stories, base, prompts, { lora: lora32, adapter, prompt: SEQS[1] });
    console.log(
      `Flexora adapter (layers ${result.layers}): max |Δ log p| = ${adapted.diff.toExponential(2)}`,
    );
    assert.ok(adapted.diff <= 1e-3, `max |Δ log p| ${adapted.diff}`);
    assert.deepEqual(adapted.theirs.generated, adapted.greedy);
    // The adapter must matter, or the comparison above could pass with llama.cpp ignoring it.
    const moved = maxLogprobDiff((await baseLogits()).slice(1), adapted.theirs.logits);
    console.log(`Flexora adapter vs base: max |Δ log p| = ${moved.toFixed(3)}`);
    assert.ok(moved > 0.1, `the adapter changes log-probs by only ${moved}`);
  },
);

parity(
  "qwen2 (q/k/v biases, NeoX RoPE) with an adapter on q/k/v, and Llama 3 RoPE scaling, match llama.cpp",
  async () => {
    const qwen2Dir = await storiesVariant(join(tmp, "qwen2"), { model_type: "qwen2" }, qkvBiases());
    const llama3Dir = await storiesVariant(join(tmp, "llama3"), {
      rope_scaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 64,
      },
    });
    const lora: LoraConfig = {
      rank: 4,
      alpha: 8,
      rslora: false,
      targets: ["q_proj", "k_proj", "v_proj"],
      layers: [1, 3],
    };
    const peft = await randomAdapter(qwen2Dir, join(tmp, "qwen2-adapter"), lora);
    const files = {
      qwen2: join(tmp, "qwen2.gguf"),
      lora: join(tmp, "qwen2-lora.gguf"),
      llama3: join(tmp, "llama3.gguf"),
    };
    assert.equal((await exportModelGguf(qwen2Dir, files.qwen2, { dtype: "F32" })).architecture, "qwen2");
    await exportAdapterGguf(peft, qwen2Dir, files.lora);
    await exportModelGguf(llama3Dir, files.llama3, { dtype: "F32" });
    const qwen2 = await loadModel(qwen2Dir), llama3 = await loadModel(llama3Dir);
    const adapter = await readAdapter(peft, qwen2.config);
    const runs = await runLlamaCpp([
      { model: files.qwen2, vocab: 512, sequences: SEQS },
      { model: files.qwen2, lora: files.lora, vocab: 512, sequences: SEQS },
      { model: files.llama3, vocab: 512, sequences: SEQS },
    ]);
    const diffs = {
      qwen2: maxLogprobDiff(await engineLogits(qwen2, SEQS), runs[0].logits),
      qwen2Adapter: maxLogprobDiff(await engineLogits(qwen2, SEQS, adapter), runs[1].logits),
      llama3: maxLogprobDiff(await engineLogits(llama3, SEQS), runs[2].logits),
      // the variants must differ from stories260K itself where llama.cpp is concerned
      qwen2VsStories: maxLogprobDiff(await baseLogits(), runs[0].logits),
      llama3VsStories: maxLogprobDiff(await baseLogits(), runs[2].logits),
    };
    console.log("variants:", JSON.stringify(diffs));
    for (const key of ["qwen2", "qwen2Adapter", "llama3"] as const) {
      assert.ok(diffs[key] <= 1e-3, `${key}: max |Δ log p| ${diffs[key]}`);
    }
    assert.ok(diffs.qwen2VsStories > 0.1 && diffs.llama3VsStories > 0.1, JSON.stringify(diffs));
  },
);

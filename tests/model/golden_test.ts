/**
 * The whole model against golden values from an independent implementation (../shared/README.md).
 */

import assert from "node:assert/strict";
import { argmax, generate, softmaxAt } from "../../src/model/generate.ts";
import { buildStepGraph } from "../../src/model/graphs.ts";
import { loadModel } from "../../src/model/model.ts";
import { STORIES } from "./shared.ts";

const model = await loadModel(STORIES);
const step = await model.session(buildStepGraph(model.config, model.weights));

Deno.test("stories260K: tokenizer ids match the golden encoding", () => {
  const ids = model.tokenizer.encode("Once upon a time, there was a little girl named Lily.");
  assert.deepEqual(ids, [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]);
});

Deno.test("stories260K: next-token distribution after [1] matches the golden top 5 within 1e-4", async () => {
  const [first] = await generate(step, model.config, [1], { maxTokens: 1 });
  assert.equal(first, 403);
  const { logits } = await stepOnce([1]);
  const p = softmaxAt(logits);
  const top = [...p.keys()].sort((a, b) => p[b] - p[a]).slice(0, 5);
  const golden: [number, number][] = [[403, 0.7837], [385, 0.1555], [410, 0.0156], [317, 0.0111], [
    407,
    0.0078,
  ]];
  assert.deepEqual(top, golden.map(([id]) => id));
  // The golden probabilities are rounded to 4 decimals: within 1e-4 means within rounding (5e-5) plus 5e-5.
  golden.forEach(([id, prob]) =>
    assert.ok(Math.abs(p[id] - prob) <= 1e-4, `p(${id}) = ${p[id]}, golden ${prob}`)
  );
  assert.equal(argmax(logits), 403);
});

Deno.test("stories260K: greedy decoding from [1] gives the golden 32 ids (with the KV cache)", async () => {
  const ids = await generate(step, model.config, [1], { maxTokens: 32 });
  const golden =
    "403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 322 265 282 295 433 426 385";
  assert.deepEqual(ids, golden.split(" ").map(Number));
});

Deno.test("stories260K: decoding with the cache equals re-running the whole prefix", async () => {
  const prompt = model.tokenizer.encode("Once upon a time");
  const cached = await generate(step, model.config, prompt, { maxTokens: 6 });
  const seq = [...prompt];
  for (let i = 0; i < 6; i++) seq.push(argmax((await stepOnce(seq)).logits));
  assert.deepEqual(cached, seq.slice(prompt.length));
});

async function stepOnce(ids: number[]) {
  const { hostTensor } = await import("../../src/runtime/session.ts");
  const cfg = model.config;
  const feeds: Record<string, ReturnType<typeof hostTensor>> = {
    input_ids: hostTensor("int64", [1, ids.length], ids),
    position_ids: hostTensor("int64", [1, ids.length], ids.map((_, i) => i)),
    attention_mask: hostTensor("int64", [1, ids.length], ids.map(() => 1)),
    last_index: hostTensor("int64", [1], [ids.length - 1]),
  };
  for (let l = 0; l < cfg.numLayers; l++) {
    for (const kv of ["key", "value"]) {
      feeds[`past_key_values.${l}.${kv}`] = hostTensor("float32", [1, cfg.numKvHeads, 0, cfg.headDim]);
    }
  }
  const out = await step.run(feeds, ["logits"]);
  return { logits: out.logits.data as Float32Array };
}

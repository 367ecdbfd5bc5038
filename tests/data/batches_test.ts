import assert from "node:assert/strict";
import { join } from "node:path";
import { BatchPlan, WINDOW_BATCHES } from "../../src/data/batches.ts";
import { loadDataset } from "../../src/data/dataset.ts";
import { tokenizeExamples } from "../../src/data/tokenize.ts";
import {
  batchFeeds,
  countTargets,
  microBatches,
  type Sequence,
  targetCount,
} from "../../src/data/sequence.ts";
import { loadTokenizer } from "../../src/model/tokenizer.ts";
import { DATA, STORIES } from "./helpers.ts";

/** story-object's training set, tokenized with stories260K's tokenizer (2000 sequences of varied length). */
async function storySequences(): Promise<readonly Sequence[]> {
  const [data, tokenizer] = await Promise.all([
    loadDataset(join(DATA, "story-object")),
    loadTokenizer(STORIES),
  ]);
  return tokenizeExamples(data.train, tokenizer, { maxLength: 256, appendEos: true }).sequences;
}

/** `count` sequences of lengths drawn from 1..40 by a fixed rule (no Rng: the plan's own generator is under test). */
function syntheticSequences(count: number): Sequence[] {
  return Array.from(
    { length: count },
    (_, i) => ({ ids: new Array(1 + ((i * 37) % 40)).fill(i), targetFrom: 1 }),
  );
}

/** Asserts every sequence of `sequences` appears exactly once in `batches`. */
function assertEachOnce(batches: Sequence[][], sequences: readonly Sequence[]): void {
  const seen = new Set<Sequence>();
  for (const s of batches.flat()) {
    assert.ok(!seen.has(s), "a sequence appears twice in one epoch");
    seen.add(s);
  }
  assert.equal(seen.size, sequences.length);
  assert.ok(sequences.every((s) => seen.has(s)), "a sequence is missing from an epoch");
}

Deno.test("the same seed gives the same batches; other seeds and epochs give others", () => {
  const sequences = syntheticSequences(500);
  for (const bucket of [true, false]) {
    const a = new BatchPlan(sequences, { batchSize: 8, seed: 5, bucket });
    const b = new BatchPlan(sequences, { batchSize: 8, seed: 5, bucket });
    for (const epoch of [0, 1, 7]) assert.deepEqual(b.epoch(epoch), a.epoch(epoch));
    assert.notDeepEqual(new BatchPlan(sequences, { batchSize: 8, seed: 6, bucket }).epoch(0), a.epoch(0));
    assert.notDeepEqual(a.epoch(1), a.epoch(0));
    // Seed s at epoch 1 is not seed s + 1 at epoch 0.
    assert.notDeepEqual(new BatchPlan(sequences, { batchSize: 8, seed: 6, bucket }).epoch(0), a.epoch(1));
  }
});

Deno.test("every sequence appears exactly once per epoch", () => {
  const sequences = syntheticSequences(1234);
  for (const bucket of [true, false]) {
    const plan = new BatchPlan(sequences, { batchSize: 16, seed: 0, bucket });
    for (const epoch of [0, 1, 2]) {
      const batches = plan.epoch(epoch);
      assert.equal(batches.length, plan.batchesPerEpoch);
      assertEachOnce(batches, sequences);
    }
  }
});

Deno.test("the last partial batch is kept, last; every other batch is full", () => {
  for (const [count, size] of [[10, 4], [1001, 8], [8 * WINDOW_BATCHES + 3, 8], [5, 8]]) {
    const sequences = syntheticSequences(count);
    for (const bucket of [true, false]) {
      const batches = new BatchPlan(sequences, { batchSize: size, seed: 1, bucket }).epoch(0);
      assert.equal(batches.length, Math.ceil(count / size));
      assert.ok(batches.slice(0, -1).every((b) => b.length === size));
      assert.equal(batches.at(-1)!.length, count % size || size);
    }
  }
});

Deno.test("bucketing reduces padding on story-object compared with plain shuffled batches", async () => {
  const sequences = await storySequences();
  const bucketed = new BatchPlan(sequences, { batchSize: 16, seed: 0 });
  const plain = new BatchPlan(sequences, { batchSize: 16, seed: 0, bucket: false });
  for (const epoch of [0, 1]) {
    assertEachOnce(bucketed.epoch(epoch), sequences);
    const [b, p] = [bucketed.paddingFraction(epoch), plain.paddingFraction(epoch)];
    assert.ok(b < p / 2, `epoch ${epoch}: bucketed padding ${b.toFixed(4)} vs plain ${p.toFixed(4)}`);
  }
});

Deno.test("paddingFraction counts the padded positions of right-padded batches", () => {
  const seq = (n: number): Sequence => ({ ids: new Array(n).fill(1) });
  const plan = new BatchPlan([seq(2), seq(4)], { batchSize: 2, seed: 0 });
  assert.equal(plan.paddingFraction(0), 2 / 8); // one batch [2, 4] padded to 4 wide
  assert.equal(new BatchPlan([seq(3), seq(3)], { batchSize: 1, seed: 0 }).paddingFraction(0), 0);
});

Deno.test("bad batch plan options are errors naming the value", () => {
  const sequences = syntheticSequences(4);
  assert.throws(
    () => new BatchPlan(sequences, { batchSize: 0, seed: 0 }),
    /'batchSize' must be a positive integer, got 0/,
  );
  assert.throws(
    () => new BatchPlan(sequences, { batchSize: 2, seed: 0.5 }),
    /'seed' must be an integer, got 0.5/,
  );
  assert.throws(() => new BatchPlan([], { batchSize: 2, seed: 0 }), /at least one sequence/);
  assert.throws(() => new BatchPlan(sequences, { batchSize: 2, seed: 0 }).epoch(-1), /'epoch' .* got -1/);
});

Deno.test("batch(step) is batch step % n of epoch floor(step / n): the one way a step finds its batch", () => {
  const sequences = syntheticSequences(23);
  const plan = new BatchPlan(sequences, { batchSize: 4, seed: 3 });
  const n = plan.batchesPerEpoch;
  for (const step of [0, 1, n - 1, n, n + 2, 3 * n - 1, 1, 0]) {
    assert.equal(plan.epochOf(step), Math.floor(step / n));
    assert.deepEqual(plan.batch(step), plan.epoch(Math.floor(step / n))[step % n], `step ${step}`);
  }
  assert.throws(() => plan.batch(-1), /'step' must be a non-negative integer, got -1/);
});

Deno.test("microBatches: at most `size` sequences each, weighted by their share of the batch's target labels", () => {
  const seqs = [...syntheticSequences(6), { ids: [5, 6, 7, 8], targetFrom: 3 }, { ids: [9], targetFrom: 0 }];
  const { batches, weights } = microBatches(seqs, 3);
  assert.deepEqual(batches, [seqs.slice(0, 3), seqs.slice(3, 6), seqs.slice(6)]);
  // The share is counted on the labels the feeds carry: what the loss averages over.
  const labels = batches.map((b) => countTargets(batchFeeds(b, 0).labels));
  const all = labels.reduce((a, b) => a + b, 0);
  assert.deepEqual(weights, labels.map((n) => n / all));
  for (const q of seqs) assert.equal(targetCount(q), countTargets(batchFeeds([q], 0).labels), `${q.ids}`);
});

/**
 * The frozen-prefix cache is a pure re-arrangement: a gradient graph that starts at the lowest LoRA layer, fed
 * the cached input of that layer, gives the loss and LoRA gradients of the graph that starts from the tokens
 * (float32, within 1e-5), on the tiny fixture and on stories260K, from memory and from the spill file; and
 * retraining with it follows the same course.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../src/data/dataset.ts";
import { batchFeeds, type Sequence } from "../../src/data/sequence.ts";
import { tokenizeExamples } from "../../src/data/tokenize.ts";
import { resolveOptions } from "../../src/flexora/options.ts";
import { PrefixCache } from "../../src/flexora/prefix_cache.ts";
import { retrain } from "../../src/flexora/retrain.ts";
import { buildLoraGradGraph } from "../../src/flexora/train_graphs.ts";
import { buildPrefixGraph, layerInputName } from "../../src/model/graphs.ts";
import { validateLora } from "../../src/model/lora.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import type { HostTensor } from "../../src/runtime/session.ts";
import { nonzeroLora } from "../model/random_lora.ts";
import { DATA, ROOT, STORIES } from "../model/shared.ts";

const tiny = await loadModel(join(ROOT, "fixtures/tiny-llama"));
const tinyData = await loadDataset(join(ROOT, "fixtures/tiny-data"));
const tinyTrain = tokenizeExamples(tinyData.train, tiny.tokenizer, { maxLength: 64 }).sequences;

const largest = (a: HostTensor, b: HostTensor) =>
  Math.max(...Array.from(a.data as Float32Array, (x, i) => Math.abs(x - (b.data[i] as number))));

async function checkGradients(model: Model, layers: number[], seqs: readonly Sequence[]) {
  const lora = validateLora(model.config, {
    rank: 4,
    alpha: 8,
    rslora: false,
    targets: ["q_proj", "v_proj", "down_proj"],
    layers,
  });
  const params = nonzeroLora(model.config, lora, { seed: 1, range: 0.1 });
  const full = await model.session(buildLoraGradGraph(model.config, model.weights, { config: lora }));
  const from = Math.min(...layers);
  const cut = await model.session(
    buildLoraGradGraph(model.config, model.weights, { config: lora }, { fromLayer: from }),
  );
  const prefix = await model.session(buildPrefixGraph(model.config, model.weights, from));
  const pad = model.tokenizer.padTokenId ?? 0;
  const cache = (budgetBytes: number) =>
    new PrefixCache({
      session: prefix,
      output: layerInputName(from),
      width: model.config.hiddenSize,
      dtype: "float32",
      budgetBytes,
      padId: pad,
    });
  const [inMemory, spilled] = [cache(2 ** 30), cache(0)];
  // Batches of different lengths and compositions: a sequence's rows do not depend on its batch.
  const batches = [seqs.slice(0, 4), seqs.slice(2, 7), seqs.slice(0, 4)];
  for (const batch of batches) {
    const expected = await full.run({ ...batchFeeds(batch, pad), ...params });
    const rows = await inMemory.feeds(batch);
    assert.deepEqual(await spilled.feeds(batch), rows, "rows read back from the spill file differ");
    const got = await cut.run({ ...batchFeeds(batch, pad), ...params, [layerInputName(from)]: rows });
    for (const name of Object.keys(expected)) {
      const d = largest(expected[name], got[name]);
      assert.ok(d <= 1e-5, `${name}: differs by ${d}`);
    }
  }
  assert.equal(inMemory.stats.diskBytes, 0);
  assert.equal(spilled.stats.memoryBytes, 0);
  assert.equal(spilled.stats.sequences, 7);
  assert.equal(
    spilled.stats.diskBytes,
    seqs.slice(0, 7).reduce((n, s) => n + s.ids.length, 0) * model.config.hiddenSize * 4,
  );
  await Promise.all([inMemory.release(), spilled.release(), full.release(), cut.release(), prefix.release()]);
}

Deno.test("frozen-prefix cache: loss and LoRA gradients equal the whole graph's (tiny fixture)", async () => {
  await checkGradients(tiny, [1, 2], tinyTrain);
});

Deno.test("frozen-prefix cache: loss and LoRA gradients equal the whole graph's (stories260K)", async () => {
  const model = await loadModel(STORIES);
  const rows = (await Deno.readTextFile(join(DATA, "story-object", "train.jsonl"))).trim().split("\n")
    .slice(0, 8).map((l) => JSON.parse(l) as { prompt: string; completion: string });
  const seqs = rows.map((r) => ({
    ids: model.tokenizer.encode(r.prompt + r.completion),
    targetFrom: model.tokenizer.encode(r.prompt).length,
  }));
  await checkGradients(model, [3, 4], seqs);
});

Deno.test("frozen-prefix cache: retraining with it (in memory or on disk, whole or micro-batches) follows the same course", async () => {
  const run = async (retrainOptions: Record<string, unknown>) => {
    const o = resolveOptions({
      retrain: {
        lr: 1e-2,
        epochs: 2,
        batchSize: 4,
        ...retrainOptions,
        lora: { targets: ["q_proj", "down_proj"] },
      },
    });
    return await retrain(tiny, { train: tinyTrain, test: null }, [1, 2], {
      ...o.retrain,
      seed: 3,
      weightDecay: 0,
      maxGradNorm: 1,
      checkpointEvery: 0,
    });
  };
  const plain = await run({});
  for (
    const options of [{ prefixCacheMiB: 64 }, { prefixCacheMiB: 1e-9 }, {
      prefixCacheMiB: 64,
      microBatchSize: 2,
    }]
  ) {
    const cached = await run(options);
    assert.equal(cached.steps, plain.steps);
    cached.epochs.forEach((e, i) => {
      const d = Math.abs(e.trainLoss - plain.epochs[i].trainLoss);
      assert.ok(d <= 1e-5, `${JSON.stringify(options)}: epoch ${i + 1} train loss differs by ${d}`);
    });
    for (const [name, t] of Object.entries(plain.params)) {
      const d = largest(t, cached.params[name]);
      assert.ok(d <= 1e-4, `${JSON.stringify(options)}: ${name} differs by ${d} after ${plain.steps} steps`);
    }
  }
});

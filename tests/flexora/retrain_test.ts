import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../src/data/dataset.ts";
import { tokenizeExamples } from "../../src/data/tokenize.ts";
import { resolveOptions } from "../../src/flexora/options.ts";
import { retrain, shouldStopEarly } from "../../src/flexora/retrain.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { ROOT } from "../model/shared.ts";

const model = await loadModel(join(ROOT, "fixtures/tiny-llama"));
const data = await loadDataset(join(ROOT, "fixtures/tiny-data"));
const train = tokenizeExamples(data.train, model.tokenizer, { maxLength: 64 }).sequences;
const run = (retrainOptions: Record<string, unknown>) => {
  const o = resolveOptions({
    retrain: { lr: 1e-2, epochs: 1, ...retrainOptions, lora: { targets: ["q_proj", "v_proj", "down_proj"] } },
  });
  return retrain(model, { train, test: data.test }, [0, 2], {
    ...o.retrain,
    seed: 3,
    weightDecay: 0,
    maxGradNorm: 1,
    checkpointEvery: 0,
  });
};

Deno.test("gradient accumulation over 4 micro-batches of 2 equals one batch of 8", async () => {
  const whole = await run({ batchSize: 8 });
  const accumulated = await run({ batchSize: 8, microBatchSize: 2 });
  assert.equal(accumulated.steps, whole.steps);
  assert.ok(Math.abs(accumulated.epochs[0].trainLoss - whole.epochs[0].trainLoss) < 1e-5);
  let worst = 0, scale = 0;
  for (const [name, t] of Object.entries(whole.params)) {
    const a = accumulated.params[name].data as Float32Array, b = t.data as Float32Array;
    for (let k = 0; k < b.length; k++) {
      worst = Math.max(worst, Math.abs(a[k] - b[k]));
      scale = Math.max(scale, Math.abs(b[k]));
    }
  }
  assert.ok(worst <= 1e-4 * scale, `largest difference ${worst} (scale ${scale})`);
  // And the accumulation really ran: a different effective batch gives a different result.
  const smaller = await run({ batchSize: 2 });
  assert.notEqual(smaller.steps, whole.steps);
});

Deno.test("early stopping: stop once `patience` epochs bring no improvement over the best before them", () => {
  assert.equal(shouldStopEarly([3, 2, 1], 1), false);
  assert.equal(shouldStopEarly([3, 2, 2.5], 1), true);
  assert.equal(shouldStopEarly([3, 2, 2.5], 2), false);
  assert.equal(shouldStopEarly([3, 2, 2.5, 2.1], 2), true);
  assert.equal(shouldStopEarly([3, 2, 2.5, 1.9], 2), false);
  assert.equal(shouldStopEarly([3, 2, 2.5], 0), false);
});

Deno.test("early stopping ends retraining before its last epoch when validation stops improving", async () => {
  // Validation completions that training teaches against (" question" where a color follows): their loss falls
  // while the adapter learns the rows' form, then rises by a clear margin as it learns to answer with a color.
  const validation = data.validation!.map((r) => ({ prompt: r.prompt, completion: " question" }));
  const o = resolveOptions({ retrain: { lr: 1e-2, epochs: 12, earlyStoppingPatience: 1 } });
  const r = await retrain(model, { train, validation, test: null }, [1], {
    ...o.retrain,
    seed: 0,
    weightDecay: 0,
    maxGradNorm: 1,
    checkpointEvery: 0,
  });
  const losses = r.epochs.map((e) => e.validation!.loss);
  assert.equal(r.stoppedEarly, true, `validation losses ${losses}`);
  assert.ok(r.epochs.length < 12);
  assert.ok(shouldStopEarly(losses, 1));
});

Deno.test("the end-of-epoch evaluation scores at most a training micro-batch per run, with the same metrics", async () => {
  // Scoring runs beside the memory the trainer session keeps: its batches are held to what a training pass takes.
  const scoredBatches: number[] = [];
  const counting: Model = {
    ...model,
    async session(built, options) {
      const session = await model.session(built, options);
      if (built.graph.name !== "score") return session;
      const run = session.run.bind(session);
      session.run = (feeds, fetches) => {
        scoredBatches.push(feeds.input_ids.dims[0]);
        return run(feeds, fetches);
      };
      return session;
    },
  };
  const o = resolveOptions({ retrain: { lr: 1e-2, epochs: 1, batchSize: 4, microBatchSize: 2 } });
  const options = { ...o.retrain, seed: 3, weightDecay: 0, maxGradNorm: 1, checkpointEvery: 0 };
  const r = await retrain(counting, { train, test: data.test }, [1], options);
  assert.ok(scoredBatches.length > 1 && scoredBatches.every((b) => b <= 2), `batches ${scoredBatches}`);
  const whole = await retrain(model, { train, test: data.test }, [1], { ...options, microBatchSize: 4 });
  assert.ok(Math.abs(r.epochs[0].test!.loss - whole.epochs[0].test!.loss) < 1e-3);
});

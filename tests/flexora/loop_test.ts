/** The shared stage loop: what it reads from the trainer each step, and how it tells a diverged run. */

import assert from "node:assert/strict";
import {
  divergence,
  largestTrained,
  MAX_TRAINED_MAGNITUDE,
  runStage,
  type Trainer,
} from "../../src/flexora/loop.ts";
import { DivergedError } from "../../src/flexora/progress.ts";
import { type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import type { StepResult } from "../../src/train/step.ts";

/** A trainer whose parameters are `values`, counting how often they are downloaded. */
function countingTrainer(values: number[]): Trainer & { downloads: number } {
  const t = {
    steps: 0,
    downloads: 0,
    params(): Promise<Record<string, HostTensor>> {
      t.downloads++;
      return Promise.resolve({ "lora_B.weight": hostTensor("float32", [values.length], values) });
    },
    state: () => t.params(),
    previousState: () => t.params(),
  };
  return t;
}

const step = (paramMax: number): StepResult => ({
  loss: 1,
  gradNorm: 0.5,
  losses: { train: 1 },
  gradNorms: { train: 0.5 },
  paramMaxes: { train: paramMax },
  outputs: {},
});

function stage(results: (s: number) => StepResult) {
  return {
    stage: "retrain" as const,
    totalSteps: 5,
    learningRates: { "retrain.lr": 0.1 },
    run: (s: number) => Promise.resolve(results(s)),
    after: () => Promise.resolve({}),
    record: () => ({ history: [], epochs: [] }) as never,
  };
}

Deno.test("a healthy stage reads only the step's scalars: no parameter is downloaded per step", async () => {
  const trainer = countingTrainer([0.1, -0.2]);
  await runStage(trainer, stage(() => step(0.2)), {}, 0);
  assert.equal(trainer.downloads, 0);
});

Deno.test("a trained magnitude past the bound stops the stage, naming the tensor and the learning rate", async () => {
  const trainer = countingTrainer([0.1, -3e5]);
  await assert.rejects(
    () => runStage(trainer, stage((s) => step(s === 2 ? 3e5 : 0.2)), {}, 0),
    (e: Error) =>
      e instanceof DivergedError &&
      /^retrain: training diverged at step 3: lora_B\.weight reached 3\.0e\+5 \(past 1e\+4\).*retrain\.lr 0\.1/
        .test(
          e.message,
        ),
  );
});

Deno.test("divergence: a non-finite trained value is named; values within the bound pass", async () => {
  const worst = () => Promise.resolve(largestTrained({ "x": hostTensor("float32", [3], [1, NaN, 2]) }));
  assert.equal(await divergence(step(NaN), worst), "x became NaN");
  assert.equal(await divergence(step(MAX_TRAINED_MAGNITUDE / 2), worst), null);
});

Deno.test("divergence: a dropped float16 update excuses the later groups' losses, not the first group's", async () => {
  const worst = () => Promise.resolve({ name: "x", value: 0 });
  // The search: the gate loss is taken at the updated LoRA weights, NaN when the update's gradients overflowed.
  const search = (lora: number, skipped: boolean): StepResult => ({
    loss: lora,
    gradNorm: NaN,
    losses: { lora, gates: NaN },
    gradNorms: { lora: NaN, gates: NaN },
    outputs: {},
    skipped,
  });
  assert.equal(await divergence(search(7.9, true), worst), null);
  assert.equal(await divergence(search(7.9, false), worst), "the gates loss became NaN");
  assert.equal(await divergence(search(Infinity, true), worst), "the lora loss became Infinity");
});

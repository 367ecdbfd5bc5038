/**
 * Dynamic loss scaling of float16 training: an update whose scaled gradients overflow float16 is dropped and
 * the scale halves; a kept update equals the float32 one; the optimizer's step counts kept updates only; the
 * scaler's state travels with the trainer's state.
 */

import assert from "node:assert/strict";
import { cast, mul, reduceMean, reduceSum, sub } from "../../src/graph/build.ts";
import { Graph, type Value } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { createSession, type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { AccumulatingLoop, buildApplyGraph, gradOutputs } from "../../src/train/accumulate.ts";
import {
  DynamicLossScale,
  LOSS_SCALE_INPUT,
  LOSS_SCALER_STATE,
  lossScaleInput,
} from "../../src/train/loss_scale.ts";
import { adamw } from "../../src/train/optim.ts";
import { TrainLoop, TrainStepBuilder } from "../../src/train/step.ts";

/** Mean squared error of x·w against y, computed in the graph's type; w, x, y are float32 inputs. */
function regression(float: "float32" | "float16") {
  const g = new Graph({ float });
  const w = g.input("w", "float32", [4]);
  const x = g.input("x", "float32", ["N", 4]), y = g.input("y", "float32", ["N"]);
  const err = sub(reduceSum(mul(cast(x, g.float), cast(w, g.float)), [1]), cast(y, g.float)); // [N]
  return { g, w, loss: cast(reduceMean(mul(err, err), [0]), "float32") };
}

const BATCH: Record<string, HostTensor> = {
  x: hostTensor("float32", [4, 4], [
    0.5,
    -0.25,
    0.125,
    0.5,
    -0.5,
    0.25,
    0.375,
    -0.125,
    0.25,
    0.5,
    -0.5,
    0.25,
    0,
    0.5,
    0.25,
    -0.5,
  ]),
  y: hostTensor("float32", [4], [0.25, -0.5, 0.5, 0.125]),
};
const W0 = { w: hostTensor("float32", [4], [0.5, -0.5, 0.25, 0.75]) };

async function trainLoop(float: "float32" | "float16") {
  const { g, w, loss } = regression(float);
  const builder = new TrainStepBuilder(g);
  assert.equal(builder.lossScale !== undefined, float === "float16");
  builder.update("train", loss, [w], adamw({ weightDecay: 0 }));
  const step = builder.finish();
  return new TrainLoop(await createSession(serialize(g, step.outputs)), step, W0);
}

const close = (a: HostTensor, b: HostTensor, tol: number) =>
  Array.from(a.data as Float32Array).every((v, i) => Math.abs(v - (b.data as Float32Array)[i]) <= tol);

Deno.test("TrainLoop (float16): an overflowing step is dropped and halves the scale; the next equals float32's first", async () => {
  const [half, wide] = [await trainLoop("float16"), await trainLoop("float32")];
  assert.equal(half.lossScale, 2 ** 16);
  // The seed 2¹⁶ itself overflows float16 (max 65504) where it is cast down.
  const dropped = await half.step(BATCH, 0.1);
  assert.equal(dropped.skipped, true);
  assert.ok(!Number.isFinite(dropped.gradNorm));
  assert.deepEqual(await half.params(), W0);
  assert.equal(half.steps, 1);
  assert.equal(half.lossScale, 2 ** 15);
  const kept = await half.step(BATCH, 0.1);
  const reference = await wide.step(BATCH, 0.1);
  assert.equal(kept.skipped, false);
  assert.ok(Math.abs(kept.loss - reference.loss) <= 1e-3, `${kept.loss} vs ${reference.loss}`);
  assert.ok(Math.abs(kept.gradNorm - reference.gradNorm) <= 1e-3 * reference.gradNorm);
  // AdamW's first step moves each weight by lr·g/|g|; counting the dropped step would shrink it by a quarter.
  assert.ok(
    close((await half.params()).w, (await wide.params()).w, 1e-5),
    `${(await half.params()).w.data} vs ${(await wide.params()).w.data}`,
  );
  assert.deepEqual(Array.from((await half.state())[LOSS_SCALER_STATE].data as Float32Array), [2 ** 15, 1, 1]);
});

Deno.test("TrainLoop (float16): the loss scaler resumes from the trainer's state", async () => {
  const half = await trainLoop("float16");
  await half.step(BATCH, 0.1);
  await half.step(BATCH, 0.1);
  const { g, w, loss } = regression("float16");
  const builder = new TrainStepBuilder(g);
  builder.update("train", loss, [w], adamw({ weightDecay: 0 }));
  const step = builder.finish();
  const resumed = new TrainLoop(await createSession(serialize(g, step.outputs)), step, await half.state(), 2);
  assert.equal(resumed.lossScale, 2 ** 15);
  const [a, b] = [await half.step(BATCH, 0.1), await resumed.step(BATCH, 0.1)];
  assert.equal(a.loss, b.loss);
  assert.deepEqual(await half.state(), await resumed.state());
});

Deno.test("AccumulatingLoop (float16): unscaled micro-batch gradients; a dropped update, then float32's", async () => {
  const loop = async (float: "float32" | "float16", initial: Record<string, HostTensor> = W0, steps = 0) => {
    const { g, w, loss } = regression(float);
    const scale: Value | undefined = lossScaleInput(g);
    const grad = await createSession(serialize(g, gradOutputs(loss, [w], undefined, scale)));
    assert.equal(grad.inputNames.includes(LOSS_SCALE_INPUT), float === "float16");
    const optimizer = adamw({ weightDecay: 0 });
    const apply = buildApplyGraph([{ name: "w", shape: [4] }], optimizer);
    return new AccumulatingLoop(
      { grad, apply: await createSession(serialize(apply.graph, apply.outputs)) },
      ["w"],
      optimizer.slots,
      initial,
      { steps },
    );
  };
  const [half, wide] = [await loop("float16"), await loop("float32")];
  const micro = [0, 2].map((r) => ({
    x: hostTensor("float32", [2, 4], (BATCH.x.data as Float32Array).slice(r * 4, r * 4 + 8)),
    y: hostTensor("float32", [2], (BATCH.y.data as Float32Array).slice(r, r + 2)),
  }));
  const dropped = await half.step(micro, [0.5, 0.5], 0.1);
  assert.equal(dropped.skipped, true);
  assert.deepEqual(await half.params(), W0);
  await half.step(micro, [0.5, 0.5], 0.1);
  await wide.step(micro, [0.5, 0.5], 0.1);
  assert.ok(
    close((await half.params()).w, (await wide.params()).w, 1e-5),
    `${(await half.params()).w.data} vs ${(await wide.params()).w.data}`,
  );
  assert.deepEqual(Array.from((await half.state())[LOSS_SCALER_STATE].data as Float32Array), [2 ** 15, 1, 1]);
  // A loop resumed from that state carries on with the same scale and counts.
  const resumed = await loop("float16", await half.state(), half.steps);
  await assert.rejects(
    async () => loop("float16", await half.state(), 0),
    /skipped 1 of its steps, more than the 0 taken/,
  );
  assert.deepEqual(await resumed.state(), await half.state());
  const [a, b] = [await half.step(micro, [0.5, 0.5], 0.1), await resumed.step(micro, [0.5, 0.5], 0.1)];
  assert.equal(a.loss, b.loss);
  assert.deepEqual(await resumed.state(), await half.state());
});

Deno.test("DynamicLossScale doubles after growthInterval finite steps, within [2^-24, 2^24], and checks its state", () => {
  const s = new DynamicLossScale({ initial: 2 ** 23, growthInterval: 3 });
  for (let i = 0; i < 9; i++) s.update(true);
  assert.equal(s.scale, 2 ** 24);
  const resumed = new DynamicLossScale({}, s.state());
  assert.equal(resumed.scale, 2 ** 24);
  assert.throws(
    () => new DynamicLossScale({ initial: 0 }),
    /initial loss scale must be a positive number, got 0/,
  );
  assert.throws(
    () => new DynamicLossScale({}, hostTensor("float32", [3], [-1, 0, 0])),
    /'optimizer\/loss_scaler' must hold \[scale > 0/,
  );
});

/**
 * Training graphs on the parity device against the CPU: the LoRA and gate gradients (the gradient-accumulation
 * graph), Adam's bias correction, AdamW train steps and gradient accumulation, and float16 train steps with loss
 * scaling. Shared setup: ./webgpu_shared.ts.
 */

import assert from "node:assert/strict";
import { batchFeeds } from "../../src/data/sequence.ts";
import { buildLoraTrainStep } from "../../src/flexora/train_graphs.ts";
import { pow, sub } from "../../src/graph/build.ts";
import { Graph, type Value } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { GATE_LOGITS, loraInputs } from "../../src/model/graphs.ts";
import { batchInputs, lmLoss } from "../../src/model/lm_loss.ts";
import { initLora } from "../../src/model/lora.ts";
import { createSession, type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { AccumulatingLoop, buildApplyGraph, gradOutputs } from "../../src/train/accumulate.ts";
import { adamw, oneMinusPower } from "../../src/train/optim.ts";
import { stateOutputs, TrainLoop } from "../../src/train/step.ts";
import { STORIES } from "./shared.ts";
import {
  allLayers,
  assertClose,
  assertOnDevice,
  assertStateClose,
  loraAt,
  models,
  PARITY_DEVICE,
  scalar,
  sequences,
  TINY,
  TOLERANCE,
  webgpuTest,
} from "./webgpu_shared.ts";

for (const [label, dir] of [["tiny fixture", TINY], ["stories260K", STORIES]]) {
  webgpuTest(
    `${label}: loss, LoRA and gate gradients (the accumulation graph, gated) match the CPU's`,
    async () => {
      const { cpu, gpu, placements } = await models(dir);
      const lora = allLayers(cpu);
      const L = cpu.config.numLayers;
      const feeds = {
        ...batchFeeds(await sequences(cpu, 4)),
        ...loraAt(cpu, lora, 1),
        [GATE_LOGITS]: hostTensor("float32", [L], Array.from({ length: L }, (_, l) => 0.3 * l - 0.2)),
      };
      const results = [];
      for (const model of [cpu, gpu]) {
        const g = new Graph({ name: "lora_grad", float: model.dtype });
        const binding = loraInputs(g, model.config, { config: lora, gated: true });
        const { loss, backward } = lmLoss(model.config, model.weights, batchInputs(g), binding);
        const wrt = [...binding.params.values(), g.inputs.find((v) => v.name === GATE_LOGITS)!];
        const session = await model.session({ graph: g, outputs: gradOutputs(loss, wrt, backward) });
        results.push(await session.run(feeds));
        await session.release();
      }
      assertClose(results[1], results[0], Object.keys(results[0]));
      assertOnDevice(placements, 1);
    },
  );
}

webgpuTest("Adam's bias correction 1 − βᵗ on the device is within 1e-6 of float64", async () => {
  const g = new Graph({ name: "bias_correction", float: "float32" });
  const step = g.input("step", "float32", []);
  const betas = [0.9, 0.999, 0.9999];
  const outputs: Record<string, Value> = {};
  betas.forEach((b, i) => {
    outputs[`steady${i}`] = oneMinusPower(b, step);
    outputs[`pow${i}`] = sub(1, pow(g.scalar(b, "float32"), step)); // the form it replaced
  });
  const session = await createSession(serialize(g, outputs), { providers: [PARITY_DEVICE, "cpu"] });
  let powWorst = 0;
  for (const t of [1, 2, 10, 100, 1000, 1e4]) {
    const out = await session.run({ step: scalar(t) });
    betas.forEach((b, i) => {
      const truth = -Math.expm1(t * Math.log(b));
      const error = (name: string) => Math.abs(Number(out[name].data[0]) - truth) / truth;
      const e = error(`steady${i}`);
      assert.ok(e <= 1e-6, `β ${b}, t ${t}: relative error ${e.toExponential(2)}`);
      powWorst = Math.max(powWorst, error(`pow${i}`));
    });
  }
  console.log(`1 − pow(β, t) on ${PARITY_DEVICE}: up to ${powWorst.toExponential(2)} from float64`);
  await session.release();
});

webgpuTest("tiny fixture: AdamW train steps and gradient accumulation follow the CPU's", async () => {
  const { cpu, gpu, placements } = await models(TINY);
  const lora = allLayers(cpu);
  const seqs = await sequences(cpu, 4);
  const optimizer = adamw({ weightDecay: 0.01, maxGradNorm: 1 });
  const fused: Record<string, HostTensor>[] = [], accumulated: Record<string, HostTensor>[] = [];
  const losses: number[][] = [];
  for (const model of [cpu, gpu]) {
    const initial = loraAt(model, lora, 2);
    // One fused step graph (LoRA train step with AdamW), three steps.
    const { graph, step } = buildLoraTrainStep(model.config, model.weights, { config: lora }, optimizer);
    const session = await model.session({ graph, outputs: step.outputs }, {
      deviceOutputs: stateOutputs(step),
    });
    const loop = new TrainLoop(session, step, initial);
    const run: number[] = [];
    for (let i = 0; i < 2; i++) run.push((await loop.step(batchFeeds(seqs), 1e-2)).loss);
    fused.push(await loop.state());
    await session.release();
    // The same update over two micro-batches: gradient graph, host sum, apply graph.
    const g = new Graph({ name: "lora_grad", float: model.dtype });
    const binding = loraInputs(g, model.config, { config: lora });
    const { loss, backward } = lmLoss(model.config, model.weights, batchInputs(g), binding);
    const grad = await model.session({
      graph: g,
      outputs: gradOutputs(loss, [...binding.params.values()], backward),
    });
    const shapes = [...binding.params.values()].map((p) => ({ name: p.name, shape: p.shape as number[] }));
    const apply = await model.session(buildApplyGraph(shapes, optimizer, "float32", "lora"));
    const acc = new AccumulatingLoop({ grad, apply }, shapes.map((s) => s.name), optimizer.slots, initial, {
      group: "lora",
    });
    const micro = [batchFeeds(seqs.slice(0, 2)), batchFeeds(seqs.slice(2))];
    run.push((await acc.step(micro, [0.5, 0.5], 1e-2)).loss);
    accumulated.push(await acc.state());
    await grad.release();
    await apply.release();
    losses.push(run);
  }
  losses[1].forEach((l, i) =>
    assert.ok(Math.abs(l - losses[0][i]) <= TOLERANCE * Math.abs(losses[0][i]), `loss ${i}`)
  );
  assertStateClose(fused[1], fused[0]);
  assertStateClose(accumulated[1], accumulated[0]);
  assertOnDevice(placements, 3);
});

webgpuTest(
  "stories260K: float16 train steps with loss scaling run on the device, near the CPU's",
  async () => {
    const { cpu, gpu, placements } = await models(STORIES, "float16");
    const lora = allLayers(cpu, ["q_proj", "v_proj", "down_proj"]);
    const seqs = await sequences(cpu, 4);
    const runs: { losses: number[]; skipped: boolean[] }[] = [];
    for (const model of [cpu, gpu]) {
      const { graph, step } = buildLoraTrainStep(model.config, model.weights, { config: lora }, adamw({}));
      assert.ok(step.lossScale, "a float16 step takes a loss scale");
      const session = await model.session({ graph, outputs: step.outputs }, {
        deviceOutputs: stateOutputs(step),
      });
      const loop = new TrainLoop(session, step, initLora(model.config, lora, 4));
      // Dynamic loss scaling drops the first updates while the scale is too large for float16.
      const run = { losses: [] as number[], skipped: [] as boolean[] };
      while (run.skipped.filter((s) => !s).length < 3) {
        assert.ok(run.losses.length < 20, "twenty steps without three updates");
        const r = await loop.step(batchFeeds(seqs), 1e-2);
        assert.ok(Number.isFinite(r.loss), `step ${run.losses.length}: the loss is finite`);
        run.losses.push(r.loss);
        run.skipped.push(r.skipped ?? false);
      }
      runs.push(run);
      await session.release();
    }
    assert.deepEqual(runs[1].skipped, runs[0].skipped, "the same updates are dropped");
    // float16 kernels differ between providers (accumulation order and width), so 1e-2 here, not 1e-4.
    runs[1].losses.forEach((l, i) => {
      const expected = runs[0].losses[i];
      assert.ok(Math.abs(l - expected) <= 1e-2 * expected, `loss ${i}: ${l} vs ${expected}`);
    });
    assert.ok(runs[1].losses.at(-1)! < runs[1].losses[0], "the loss falls");
    assertOnDevice(placements, 1);
  },
);

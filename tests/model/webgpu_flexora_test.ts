/**
 * Flexora on the parity device against the CPU: the search step (first order and unrolled, both also held to the
 * float64 step) and a whole finetune (search, select, retrain). Shared setup: ./webgpu_shared.ts.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../src/data/dataset.ts";
import { batchFeeds } from "../../src/data/sequence.ts";
import { finetune } from "../../src/flexora/pipeline.ts";
import { buildSearchStep } from "../../src/flexora/train_graphs.ts";
import { GATE_LOGITS } from "../../src/model/graphs.ts";
import { loadModel } from "../../src/model/model.ts";
import { type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { adamw } from "../../src/train/optim.ts";
import { stateOutputs, TrainLoop } from "../../src/train/step.ts";
import { ROOT } from "./shared.ts";
import {
  allLayers,
  assertClose,
  assertOnDevice,
  assertStateClose,
  loraAt,
  models,
  PARITY_DEVICE,
  relativeError,
  scalar,
  sequences,
  TARGETS,
  TINY,
  webgpuTest,
} from "./webgpu_shared.ts";

for (const hypergradient of ["first-order", "unrolled"] as const) {
  webgpuTest(`tiny fixture: the Flexora search step (${hypergradient}) follows the CPU's`, async () => {
    const { cpu, gpu, placements } = await models(TINY);
    const exact = await loadModel(TINY, { dtype: "float64" }); // the reference both are measured against
    const lora = allLayers(cpu);
    const seqs = await sequences(cpu, 8);
    const feeds = { ...batchFeeds(seqs.slice(0, 4)), ...batchFeeds(seqs.slice(4), 0, "val/") };
    const results: { state: Record<string, HostTensor>; outputs: Record<string, HostTensor> }[] = [];
    for (const model of [cpu, gpu, exact]) {
      const optimizers = { lora: adamw({}), gates: adamw({ weightDecay: 0 }) };
      const { graph, step } = buildSearchStep(model.config, model.weights, lora, optimizers, {
        hypergradient,
      });
      const session = await model.session({ graph, outputs: step.outputs }, {
        deviceOutputs: stateOutputs(step),
      });
      const L = model.config.numLayers;
      const initial = { ...loraAt(model, lora, 3), [GATE_LOGITS]: hostTensor("float32", [L]) };
      const float = model.dtype as "float32" | "float64";
      const loop = new TrainLoop(
        session,
        step,
        Object.fromEntries(
          Object.entries(initial).map((
            [n, t],
          ) => [n, hostTensor(float, t.dims, Array.from(t.data as Float32Array))]),
        ),
      );
      let outputs: Record<string, HostTensor> = {};
      for (let i = 0; i < 2; i++) {
        const r = await loop.step(feeds, { lora: 1e-2, gates: 0.05 });
        // The first step's losses and gate gradient; the second's depend on the first's Adam update.
        if (i === 0) {
          outputs = {
            ...r.outputs,
            "lora/loss": scalar(r.losses.lora),
            "gates/loss": scalar(r.losses.gates),
          };
        }
      }
      results.push({ state: await loop.state(), outputs });
      await session.release();
    }
    // The gate gradient is taken after the LoRA update, at the updated weights, and centred by the softmax
    // Jacobian (a small difference of large terms): it follows the update's precision (1.1e-4 from the CPU
    // while Adam's bias correction went through WGSL's pow, 5e-6 since; see `oneMinusPower`). Both providers
    // are also held to 1e-4 of the float64 step.
    const hyper = results.map((r) => r.outputs["gates/hypergradient"]);
    const figures = [[hyper[1], hyper[0]], [hyper[0], hyper[2]], [hyper[1], hyper[2]]].map(([a, b]) =>
      relativeError(a, b)
    );
    console.log(
      `${hypergradient}: gate hypergradient, relative: ${PARITY_DEVICE} ${
        figures[0].toExponential(2)
      } from ` +
        `the CPU; from float64, the CPU ${figures[1].toExponential(2)}, ${PARITY_DEVICE} ` +
        `${figures[2].toExponential(2)}`,
    );
    assertClose({ cpu: hyper[0], device: hyper[1] }, { cpu: hyper[2], device: hyper[2] }, ["cpu", "device"]);
    assertClose(results[1].outputs, results[0].outputs, [
      "lora/loss",
      "gates/loss",
      "gates",
      "gates/hypergradient",
    ]);
    assertStateClose(results[1].state, results[0].state);
    assertOnDevice(placements, 1);
  });
}

webgpuTest("tiny fixture: a whole finetune (search, select, retrain) selects the CPU's layers", async () => {
  const { cpu, gpu, placements } = await models(TINY);
  const data = await loadDataset(join(ROOT, "fixtures/tiny-data"));
  const options = {
    search: { loraLr: 1e-2, gateLr: 0.05, epochs: 1, lora: { targets: [...TARGETS] } },
    retrain: { lr: 1e-2, epochs: 1, lora: { targets: [...TARGETS] } },
    maxLength: 48,
    checkpointEvery: 0,
  };
  const [a, b] = [await finetune(cpu, data, options), await finetune(gpu, data, options)];
  assert.deepEqual(b.layers, a.layers);
  assertClose({ g: hostTensor("float64", [a.search!.gates.length], b.search!.gates) }, {
    g: hostTensor("float64", [a.search!.gates.length], a.search!.gates),
  }, ["g"]);
  assert.ok(placements.length >= 2);
  assertOnDevice(placements, placements.length);
});

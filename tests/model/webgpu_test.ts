/**
 * Every graph on onnxruntime's WebGPU provider (or CUDA's, with FLEXORA_PARITY_DEVICE=cuda) against the CPU provider: scoring, generation with the KV cache,
 * the LoRA gradient (the gradient-accumulation graph) and train step with AdamW, the Flexora search step (first
 * order and unrolled), float16 with loss scaling, and a whole finetune. Float32 losses and gradients agree within
 * 1e-4 (relative, over each tensor), greedy ids are equal, and at least 99 % of each graph's MatMul FLOPs run on
 * the device. On a machine without a GPU the provider runs on Mesa's lavapipe (tools/lavapipe.sh); without an
 * adapter the tests are skipped, saying why.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../src/data/dataset.ts";
import { tokenizeExamples } from "../../src/data/mod.ts";
import { finetune } from "../../src/flexora/pipeline.ts";
import { Scorer } from "../../src/flexora/score.ts";
import { Graph, type Value } from "../../src/graph/graph.ts";
import { pow, sub } from "../../src/graph/build.ts";
import { batchFeeds, type Sequence } from "../../src/data/sequence.ts";
import { generate } from "../../src/model/generate.ts";
import {
  buildScoringGraph,
  buildStepGraph,
  GATE_LOGITS,
  kvOutputs,
  loraInputs,
} from "../../src/model/graphs.ts";
import { initLora, type LoraConfig, validateLora } from "../../src/model/lora.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { buildLoraTrainStep, buildSearchStep } from "../../src/flexora/train_graphs.ts";
import { batchInputs, lmLoss } from "../../src/model/lm_loss.ts";
import {
  CPU_PROVIDER,
  deviceMatmulShare,
  formatPlacement,
  type Placement,
} from "../../src/runtime/placement.ts";
import { createSession, type HostTensor, hostTensor, type Traffic } from "../../src/runtime/session.ts";
import { AccumulatingLoop, buildApplyGraph, gradOutputs } from "../../src/train/accumulate.ts";
import { adamw, oneMinusPower } from "../../src/train/optim.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { stateOutputs, TrainLoop } from "../../src/train/step.ts";
import { flexora } from "../cli/run.ts";
import { NO_PARITY_DEVICE, PARITY_DEVICE } from "../runtime/webgpu.ts";
import { ROOT, STORIES } from "./shared.ts";
import { TARGET_MODULES } from "../../src/model/names.ts";

const TINY = join(ROOT, "fixtures/tiny-llama");
const TOLERANCE = 1e-4;
const TARGETS = TARGET_MODULES;

/**
 * A test on the parity device (WebGPU unless FLEXORA_PARITY_DEVICE=cuda): skipped, with the reason printed once
 * by ../runtime/webgpu.ts, when the device is unavailable (for WebGPU: no adapter).
 */
function webgpuTest(name: string, fn: () => Promise<void>, only?: "webgpu"): void {
  const ignore = NO_PARITY_DEVICE !== null || (only !== undefined && only !== PARITY_DEVICE);
  Deno.test({ name: `${PARITY_DEVICE}: ${name}`, ignore, fn });
}

/*
 * Every test that profiles on WebGPU lives in this file, so they run one after another: the WebGPU context is
 * shared by all sessions in a process, and two sessions profiling at once would mix their kernel events.
 */

/** The same model on the CPU and on WebGPU; the WebGPU one records every session's placement. */
async function models(dir: string, dtype: "float32" | "float16" = "float32") {
  const placements: Placement[] = [];
  const cpu = await loadModel(dir, { dtype });
  const gpu = await loadModel(dir, {
    dtype,
    providers: [PARITY_DEVICE, "cpu"],
    onPlacement: (p) => placements.push(p),
  });
  return { cpu, gpu, placements };
}

/** Every session placed at least 99 % of its MatMul FLOPs on the device. */
function assertOnDevice(placements: readonly Placement[], sessions: number): void {
  assert.equal(placements.length, sessions, "one placement report per session");
  for (const p of placements) {
    assert.ok(deviceMatmulShare(p) >= 0.99, formatPlacement(p));
    assert.ok(Object.keys(p.nodes).some((k) => k !== CPU_PROVIDER), `${p.graph} ran nothing on the device`);
  }
}

/** ‖a − b‖ / ‖b‖ over a tensor (b the CPU's), or |a − b| when b is all zeros. */
function relativeError(a: HostTensor, b: HostTensor): number {
  assert.deepEqual(a.dims, b.dims);
  let diff = 0, norm = 0;
  for (let i = 0; i < b.data.length; i++) {
    const [x, y] = [Number(a.data[i]), Number(b.data[i])];
    diff += (x - y) ** 2;
    norm += y * y;
  }
  return norm === 0 ? Math.sqrt(diff) : Math.sqrt(diff / norm);
}

/** Each named tensor of `gpu` within `tolerance` of the CPU's. */
function assertClose(
  gpu: Readonly<Record<string, HostTensor>>,
  cpu: Readonly<Record<string, HostTensor>>,
  names: readonly string[],
  tolerance = TOLERANCE,
): void {
  assert.ok(names.length > 0);
  for (const name of names) {
    const e = relativeError(gpu[name], cpu[name]);
    assert.ok(e <= tolerance, `${name}: relative error ${e.toExponential(2)} > ${tolerance}`);
  }
}

const scalar = (x: number) => hostTensor("float32", [], [x]);

/**
 * Optimizer state after a few steps: parameters and both moments within 1e-4. (Adam divides each element's step by
 * its own gradient's size, so this holds only with a bias correction 1 − βᵗ that is exact on both providers:
 * with `1 − pow(β, t)`, WGSL's `pow` put the first update 5e-5 off, the parameters needed 1e-2 here and the
 * second moments 2e-4; see `oneMinusPower` in src/train/optim.ts.)
 */
function assertStateClose(gpu: Record<string, HostTensor>, cpu: Record<string, HostTensor>): void {
  assertClose(gpu, cpu, Object.keys(cpu));
}

async function sequences(model: Model, n: number): Promise<readonly Sequence[]> {
  const data = await loadDataset(join(ROOT, "fixtures/tiny-data"));
  return tokenizeExamples(data.train.slice(0, n), model.tokenizer, { maxLength: 48 }).sequences;
}

/**
 * LoRA weights at a generic point: `initLora`'s A, and B nonzero too (at B = 0, PEFT's start, A and the gates get
 * no direct gradient, and the gate gradient is a small difference of large terms).
 */
function loraAt(model: Model, lora: LoraConfig, seed: number): Record<string, HostTensor> {
  const params = initLora(model.config, lora, seed);
  for (const [name, t] of Object.entries(params)) {
    if (!name.includes("lora_B")) continue;
    params[name] = hostTensor(
      "float32",
      t.dims,
      Array.from({ length: t.data.length }, (_, i) => Math.sin(i) * 0.05),
    );
  }
  return params;
}

function allLayers(model: Model, targets: readonly string[] = TARGETS): LoraConfig {
  return validateLora(model.config, {
    rank: 4,
    alpha: 8,
    rslora: false,
    targets: targets as LoraConfig["targets"],
    layers: [...Array(model.config.numLayers).keys()],
  });
}

for (const [label, dir] of [["tiny fixture", TINY], ["stories260K", STORIES]]) {
  webgpuTest(`${label}: per-token log-probabilities match the CPU's`, async () => {
    const { cpu, gpu, placements } = await models(dir);
    const ids = Array.from({ length: 12 }, (_, i) => (7 * i + 3) % cpu.config.vocabSize);
    const b = batchFeeds([{ ids }, { ids: ids.slice(0, 7) }]);
    const feeds = { ...b, targets: b.labels };
    delete (feeds as Record<string, HostTensor>).labels;
    const results = [];
    for (const model of [cpu, gpu]) {
      const session = await model.session(buildScoringGraph(model.config, model.weights));
      results.push(await session.run(feeds));
      await session.release();
    }
    assertClose(results[1], results[0], ["token_logprobs"]);
    assertOnDevice(placements, 1);
  });
}

webgpuTest("stories260K: greedy generation with the KV cache gives the CPU's ids", async () => {
  const { cpu, gpu, placements } = await models(STORIES);
  const ids = [];
  for (const model of [cpu, gpu]) {
    const session = await model.session(buildStepGraph(model.config, model.weights));
    ids.push(await generate(session, model.config, [1, 403, 407], { maxTokens: 24, greedy: true }));
    await session.release();
  }
  assert.deepEqual(ids[1], ids[0]);
  assertOnDevice(placements, 1);
});

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

webgpuTest("the CLI logs the device and each session's placement; its greedy ids are the CPU's", async () => {
  const args = ["generate", "--model", STORIES, "--prompt-ids", "1", "--max-tokens", "8", "--json"];
  const [cpu, gpu] = [
    await flexora(...args, "--device", "cpu"),
    await flexora(...args, "--device", PARITY_DEVICE),
  ];
  assert.equal(gpu.code, 0, gpu.err);
  assert.match(gpu.err, new RegExp(`^device: ${PARITY_DEVICE}$`, "m"));
  assert.match(
    gpu.err,
    /^placement step: \d+ nodes on \w+ExecutionProvider.*MatMul FLOPs 100\.0% on the device/m,
  );
  assert.doesNotMatch(cpu.err, /placement/);
  const ids = JSON.parse(cpu.out).ids;
  assert.equal(ids.length, 8);
  assert.deepEqual(JSON.parse(gpu.out).ids, ids);
});

webgpuTest(
  "a train step keeps its state on the device: it moves only the batch, the scalars and the losses",
  async () => {
    const { gpu } = await models(STORIES);
    const lora = allLayers(gpu);
    const seqs = await sequences(gpu, 4);
    const batch = batchFeeds(seqs);
    const batchBytes = Object.values(batch).reduce((n, t) => n + t.data.byteLength, 0);
    const stateBytes = Object.values(loraAt(gpu, lora, 5)).reduce((n, t) => n + t.data.byteLength, 0) * 3; // w, m, v
    const { graph, step } = buildLoraTrainStep(gpu.config, gpu.weights, { config: lora }, adamw({}));
    const traffic = [];
    for (const deviceOutputs of [[], stateOutputs(step)]) {
      const session = await gpu.session({ graph, outputs: step.outputs }, { deviceOutputs });
      const loop = new TrainLoop(session, step, loraAt(gpu, lora, 5));
      await loop.step(batch, 1e-3); // the first step uploads the initial state
      const before = { ...session.traffic };
      for (let i = 0; i < 2; i++) await loop.step(batch, 1e-3);
      traffic.push({
        toDevice: (session.traffic.toDevice - before.toDevice) / 2,
        toHost: (session.traffic.toHost - before.toHost) / 2,
      });
      assert.ok((await loop.params())[Object.keys(await loop.params())[0]].data.length > 0);
      await session.release();
    }
    const [hostState, deviceState] = traffic;
    // State on the host: it crosses both ways on every step.
    assert.ok(hostState.toDevice >= batchBytes + stateBytes, JSON.stringify(hostState));
    assert.ok(hostState.toHost >= stateBytes, JSON.stringify(hostState));
    // State on the device: the batch and two scalars in (step, lr), three out (the loss, the gradient norm and
    // the largest trained magnitude the divergence check reads).
    assert.equal(deviceState.toDevice, batchBytes + 2 * 4);
    assert.equal(deviceState.toHost, 3 * 4);
  },
  "webgpu", // onnxruntime-node binds device buffers for WebGPU only
);

webgpuTest(
  "generation keeps the KV cache on the device: a decode step moves only its token's inputs and the logits",
  async () => {
    const { gpu } = await models(STORIES);
    const cfg = gpu.config;
    const prompt = [1, 403, 407], tokens = 16;
    /** Bytes of the whole KV cache at `length` positions. */
    const kv = (length: number) => cfg.numLayers * 2 * cfg.numKvHeads * length * cfg.headDim * 4;
    const ids = [], perToken = [];
    for (const deviceOutputs of [[], kvOutputs(cfg)]) {
      const session = await gpu.session(buildStepGraph(cfg, gpu.weights), { deviceOutputs });
      let prefilled: Traffic | null = null;
      const counted = {
        runOnDevice: async (...args: Parameters<typeof session.runOnDevice>) => {
          const out = await session.runOnDevice(...args);
          prefilled ??= { ...session.traffic };
          return out;
        },
      };
      ids.push(await generate(counted, cfg, prompt, { maxTokens: tokens, greedy: true }));
      const decodes = session.traffic.runs - prefilled!.runs;
      assert.equal(decodes, tokens - 1);
      perToken.push({
        toDevice: session.traffic.toDevice - prefilled!.toDevice,
        toHost: session.traffic.toHost - prefilled!.toHost,
      });
      await session.release();
    }
    assert.deepEqual(ids[1], ids[0]);
    // Decode step j (1-based) after the prefill: one new token at position P + j − 1, a mask of P + j ones,
    // the last index (each int64), and the logits back; the host-side cache also crosses both ways.
    let small = 0, pastIn = 0, presentOut = 0;
    for (let j = 1; j < tokens; j++) {
      small += 8 * (3 + prompt.length + j);
      pastIn += kv(prompt.length + j - 1);
      presentOut += kv(prompt.length + j);
    }
    const logits = (tokens - 1) * cfg.vocabSize * 4;
    const [host, device] = perToken;
    assert.deepEqual(host, { toDevice: small + pastIn, toHost: logits + presentOut });
    assert.deepEqual(device, { toDevice: small, toHost: logits });
    const per = (t: { toDevice: number; toHost: number }) =>
      `${t.toDevice / (tokens - 1)} B in, ${t.toHost / (tokens - 1)} B out per token`;
    console.log(
      `stories260K, ${tokens - 1} decode steps after a ${prompt.length}-token prompt: ` +
        `KV cache on the host ${per(host)}; on the device ${per(device)}`,
    );
  },
  "webgpu", // onnxruntime-node binds device buffers for WebGPU only
);

webgpuTest(
  "generation with an adapter uploads its LoRA weights once, not with every token",
  async () => {
    const { cpu, gpu } = await models(STORIES);
    const cfg = gpu.config;
    const lora = allLayers(gpu);
    const adapterInputs = loraAt(gpu, lora, 6);
    const adapterBytes = Object.values(adapterInputs).reduce((n, t) => n + t.data.byteLength, 0);
    const prompt = [1, 403, 407], tokens = 12;
    const cpuSession = await cpu.session(buildStepGraph(cfg, cpu.weights, { config: lora }));
    const expected = await generate(cpuSession, cfg, prompt, {
      maxTokens: tokens,
      greedy: true,
      adapterInputs,
    });
    await cpuSession.release();
    const session = await gpu.session(buildStepGraph(cfg, gpu.weights, { config: lora }), {
      deviceOutputs: kvOutputs(cfg),
    });
    const runs = [];
    // Before: a session view without `resident`, so the weights are host inputs of every run. After: the session.
    for (const view of [{ runOnDevice: session.runOnDevice.bind(session) }, session]) {
      const start = { ...session.traffic };
      let first: Traffic | null = null, prefilled: Traffic | null = null;
      const counted = {
        runOnDevice: async (...args: Parameters<typeof session.runOnDevice>) => {
          first ??= { ...session.traffic };
          const out = await view.runOnDevice(...args);
          prefilled ??= { ...session.traffic };
          return out;
        },
        resident: "resident" in view ? view.resident.bind(view) : undefined,
      };
      const ids = await generate(counted, cfg, prompt, { maxTokens: tokens, greedy: true, adapterInputs });
      const end = session.traffic;
      assert.equal(end.runs - prefilled!.runs, tokens - 1);
      runs.push({
        ids,
        upload: first!.toDevice - start.toDevice,
        perToken: (end.toDevice - prefilled!.toDevice) / (tokens - 1),
      });
    }
    await session.release();
    const [host, device] = runs;
    assert.deepEqual(host.ids, expected);
    assert.deepEqual(device.ids, expected);
    // A decode step feeds its token's ids, position, mask and last index (int64); with the weights as host
    // inputs it feeds them too, every token; resident, they cross once, before the prefill.
    assert.equal(host.upload, 0);
    assert.equal(device.upload, adapterBytes);
    assert.equal(host.perToken - device.perToken, adapterBytes);
    let small = 0;
    for (let j = 1; j < tokens; j++) small += 8 * (3 + prompt.length + j);
    assert.equal(device.perToken, small / (tokens - 1));
    console.log(
      `stories260K, ${
        tokens - 1
      } decode steps with a rank-4 adapter on every projection (${adapterBytes} B ` +
        `of weights): host → device per token ${host.perToken} B with the weights as host inputs, ` +
        `${device.perToken} B resident`,
    );
  },
  "webgpu", // onnxruntime-node binds device buffers for WebGPU only
);

webgpuTest(
  "scoring with an adapter uploads its LoRA weights once per call, not with every batch",
  async () => {
    const { cpu, gpu } = await models(STORIES);
    const lora = allLayers(gpu);
    const adapterInputs = loraAt(gpu, lora, 7);
    const adapterBytes = Object.values(adapterInputs).reduce((n, t) => n + t.data.byteLength, 0);
    const rows = Array.from({ length: 6 }, (_, i) => ({
      prompt: `Once upon a time, a girl named Lily ${i}`,
      choices: [" went to the park.", " was sad."],
      label: i % 2,
    }));
    const cpuSession = await cpu.session(buildScoringGraph(cpu.config, cpu.weights, { config: lora }));
    const expected = await new Scorer(cpuSession, cpu.tokenizer, { batchSize: 4, adapterInputs })
      .multipleChoice(rows);
    await cpuSession.release();
    const session = await gpu.session(buildScoringGraph(gpu.config, gpu.weights, { config: lora }));
    // 12 sequences, 4 per batch: 3 runs. Before: a session view whose `resident` leaves the weights host inputs,
    // so they cross with each run. After: the session, which places them on the device once.
    const hostView = {
      run: session.run.bind(session),
      resident: (t: Readonly<Record<string, HostTensor>>) => Promise.resolve({ ...t }),
    } as unknown as typeof session;
    const moved = [];
    for (const view of [hostView, session]) {
      const start = { ...session.traffic };
      const scored = await new Scorer(view, gpu.tokenizer, { batchSize: 4, adapterInputs }).multipleChoice(
        rows,
      );
      assert.deepEqual(scored.rows.map((r) => r.pred), expected.rows.map((r) => r.pred));
      scored.rows.forEach((r, i) =>
        r.logprobs.forEach((lp, c) => {
          const want = expected.rows[i].logprobs[c];
          assert.ok(Math.abs(lp - want) <= TOLERANCE * Math.max(1, Math.abs(want)), `${lp} vs ${want}`);
        })
      );
      assert.equal(session.traffic.runs - start.runs, 3);
      moved.push(session.traffic.toDevice - start.toDevice);
    }
    await session.release();
    assert.equal(moved[0] - moved[1], 2 * adapterBytes, `host → device ${moved[0]} B vs ${moved[1]} B`);
    console.log(
      `stories260K, 3 scoring batches with a rank-4 adapter (${adapterBytes} B of weights): host → device ` +
        `${moved[0]} B with the weights as host inputs, ${moved[1]} B resident`,
    );
  },
  "webgpu", // onnxruntime-node binds device buffers for WebGPU only
);

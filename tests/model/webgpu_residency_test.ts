/**
 * What stays on the device (WebGPU only: onnxruntime-node binds device buffers for WebGPU alone), counted by
 * `Session.traffic`: a train step's state, generation's KV cache, and an adapter's LoRA weights made resident
 * (`Session.resident`) for generation and for scoring. Shared setup: ./webgpu_shared.ts.
 */

import assert from "node:assert/strict";
import { batchFeeds } from "../../src/data/sequence.ts";
import { Scorer } from "../../src/flexora/score.ts";
import { buildLoraTrainStep } from "../../src/flexora/train_graphs.ts";
import { generate } from "../../src/model/generate.ts";
import { buildScoringGraph, buildStepGraph, kvOutputs } from "../../src/model/graphs.ts";
import type { HostTensor, Traffic } from "../../src/runtime/session.ts";
import { adamw } from "../../src/train/optim.ts";
import { stateOutputs, TrainLoop } from "../../src/train/step.ts";
import { STORIES } from "./shared.ts";
import { allLayers, loraAt, models, sequences, TOLERANCE, webgpuTest } from "./webgpu_shared.ts";

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

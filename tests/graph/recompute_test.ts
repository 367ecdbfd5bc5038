/**
 * Per-layer activation checkpointing (`recompute`) is a pure re-arrangement: the gradient graph with it gives
 * the loss and LoRA / gate gradients of the one without (float32, within 1e-5) on the tiny fixture and
 * stories260K, and its backward reads no value computed inside a layer's forward, only the rebuilt copies.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { batchFeeds, type Sequence } from "../../src/data/sequence.ts";
import { buildLoraGradGraph, buildSearchStep } from "../../src/flexora/train_graphs.ts";
import { validateLora } from "../../src/model/lora.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { adamw } from "../../src/train/optim.ts";
import { TrainLoop } from "../../src/train/step.ts";
import { Rng } from "../../src/util/random.ts";
import { GATE_LOGITS } from "../../src/model/graphs.ts";
import { nonzeroLora } from "../model/random_lora.ts";
import { ROOT, STORIES } from "../model/shared.ts";

async function check(model: Model, layers: number[]) {
  const seqs: Sequence[] = [0, 1, 2].map((b) => ({
    ids: Array.from({ length: 12 - 3 * b }, (_, t) => 5 + ((7 * t + 11 * b) % (model.config.vocabSize - 5))),
  }));
  const lora = validateLora(model.config, {
    rank: 4,
    alpha: 8,
    rslora: false,
    targets: ["q_proj", "v_proj", "down_proj"],
    layers,
  });
  const adapter = { config: lora, gated: true };
  const feeds = {
    ...batchFeeds(seqs, 0),
    ...nonzeroLora(model.config, lora, { seed: 2, range: 0.1 }),
    [GATE_LOGITS]: hostTensor(
      "float32",
      [model.config.numLayers],
      layers.map(() => 0).concat(
        Array(model.config.numLayers - layers.length).fill(0.3),
      ),
    ),
  };
  const plain = buildLoraGradGraph(model.config, model.weights, adapter);
  const recomputed = buildLoraGradGraph(model.config, model.weights, adapter, { recompute: true });
  // No backward node reads a value computed inside a checkpointed layer's forward.
  const g = recomputed.graph;
  const forward = new Set(g.segments.flatMap((s) => g.nodes.slice(s.start, s.end)));
  assert.ok(forward.size > 0, "the decoder's layers are checkpointed");
  // Float values only: run-time dims (int64 shapes read inside a layer) are a few numbers, kept by design.
  const inner = new Set([...forward].flatMap((n) => n.outputs).filter((v) => v.dtype === "float32"));
  const readers = g.nodes.filter((n) =>
    !forward.has(n) && n.name.includes("grad(") && n.inputs.some((v) => inner.has(v))
  );
  // A layer's output (the next layer's input) is what is kept; values used only inside a layer are not read.
  const kept = new Set(g.segments.map((s) => g.nodes[s.end - 1].outputs[0]));
  assert.deepEqual(
    readers.filter((n) => n.inputs.some((v) => inner.has(v) && !kept.has(v))).map((n) => n.name),
    [],
  );
  const [a, b] = [await model.session(plain), await model.session(recomputed)];
  const [x, y] = [await a.run(feeds), await b.run(feeds)];
  for (const name of Object.keys(x)) {
    const d = Math.max(
      ...Array.from(x[name].data as Float32Array, (v, i) => Math.abs(v - (y[name].data[i] as number))),
    );
    assert.ok(d <= 1e-5, `${name} differs by ${d}`);
  }
  await Promise.all([a.release(), b.release()]);
}

Deno.test("recompute: loss, LoRA and gate gradients equal those without it (tiny fixture)", async () => {
  await check(await loadModel(join(ROOT, "fixtures/tiny-llama")), [0, 2]);
});

Deno.test("recompute: loss, LoRA and gate gradients equal those without it (stories260K)", async () => {
  await check(await loadModel(STORIES), [1, 3, 4]);
});

Deno.test("recompute: an unrolled Flexora search step gives the same losses, hypergradient and updates (tiny fixture)", async () => {
  const model = await loadModel(join(ROOT, "fixtures/tiny-llama"));
  const cfg = model.config;
  const config = validateLora(cfg, {
    rank: 4,
    alpha: 8,
    rslora: false,
    targets: ["q_proj", "v_proj"],
    layers: [0, 2],
  });
  const seqs = (k: number): Sequence[] =>
    [0, 1, 2].map((b) => ({
      ids: Array.from({ length: 10 - 2 * b }, (_, t) => 5 + ((3 * t + 7 * b + k) % 250)),
    }));
  const batch = { ...batchFeeds(seqs(0)), ...batchFeeds(seqs(1), 0, "val/") };
  const run = async (recompute: boolean) => {
    const { graph, step } = buildSearchStep(cfg, model.weights, config, {
      lora: adamw({ weightDecay: 0 }),
      gates: adamw({ weightDecay: 0 }),
    }, { hypergradient: "unrolled", recompute });
    assert.equal(graph.segments.length > 0, recompute);
    const session = await model.session({ graph, outputs: step.outputs });
    const initial = {
      ...nonzeroLora(cfg, config, { seed: 1, range: 0.1 }),
      [GATE_LOGITS]: hostTensor("float32", [cfg.numLayers], new Rng(3).uniforms(cfg.numLayers, -1, 1)),
    };
    const loop = new TrainLoop(session, step, initial);
    const r = await loop.step(batch, { lora: 5e-2, gates: 0.01 });
    await session.release();
    return { r, params: await loop.params() };
  };
  const [a, b] = [await run(false), await run(true)];
  for (const g of ["lora", "gates"]) assert.ok(Math.abs(a.r.losses[g] - b.r.losses[g]) <= 1e-5, g);
  const tensors = [
    ["gates/hypergradient", a.r.outputs["gates/hypergradient"], b.r.outputs["gates/hypergradient"]],
    ...Object.keys(a.params).map((n) => [n, a.params[n], b.params[n]]),
  ] as [string, HostTensor, HostTensor][];
  for (const [name, x, y] of tensors) {
    const d = Math.max(...Array.from(x.data as Float32Array, (v, i) => Math.abs(v - (y.data[i] as number))));
    assert.ok(d <= 1e-5, `${name} differs by ${d}`);
  }
});

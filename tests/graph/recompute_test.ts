/**
 * Per-layer activation checkpointing (`recompute`) is a pure re-arrangement: the gradient graph with it gives
 * the loss and LoRA / gate gradients of the one without (float32, within 1e-5) on the tiny fixture and
 * stories260K, and its backward reads no value computed inside a layer's forward, only the rebuilt copies.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { batchFeeds, type Sequence } from "../../src/data/sequence.ts";
import { buildLoraGradGraph } from "../../src/flexora/train_graphs.ts";
import { validateLora } from "../../src/model/lora.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { hostTensor } from "../../src/runtime/session.ts";
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

/**
 * The search step's gate gradient against the true hypergradient of the one-step unrolled objective
 * J(α) = L_val(w − ξ ∇w L_train(w, α), α), computed by central differences over α in float64.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { gradients } from "../../src/graph/autodiff.ts";
import { mul, sub } from "../../src/graph/build.ts";
import { Graph } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { batchFeeds } from "../../src/data/sequence.ts";
import { GATE_LOGITS, loraInputs } from "../../src/model/graphs.ts";
import { validateLora } from "../../src/model/lora.ts";
import { loadModel } from "../../src/model/model.ts";
import { batchInputs, lmLoss } from "../../src/model/lm_loss.ts";
import { buildSearchStep, type Hypergradient } from "../../src/flexora/train_graphs.ts";
import { createSession, type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { sgd } from "../../src/train/optim.ts";
import { lrInput, STEP_INPUT } from "../../src/train/step.ts";
import { Rng } from "../../src/util/random.ts";
import { ROOT } from "./shared.ts";

const model = await loadModel(join(ROOT, "fixtures/tiny-llama"));
const cfg = model.config;
const lora = validateLora(cfg, {
  rank: 2,
  alpha: 4,
  rslora: false,
  targets: ["q_proj", "v_proj"],
  layers: [0, 1, 2],
});
const XI = 0.5; // inner learning rate: large, so the second-order term matters
const external = await model.weights.sessionData();
const enc = (t: string) => model.tokenizer.encode(t);
const batches = {
  ...batchFeeds([{ ids: enc("what color is the ripe banana ? answer : yellow"), targetFrom: 9 }, {
    ids: enc("the sky is blue"),
  }]),
  ...batchFeeds([{ ids: enc("what color is the fresh grass ? answer : green"), targetFrom: 9 }], 0, "val/"),
};
const rng = new Rng(17);
const state: Record<string, HostTensor> = {};
for (const [name, v] of loraInputs(new Graph({ float: "float64" }), cfg, { config: lora }).params) {
  const n = (v.shape as number[]).reduce((a, b) => a * b, 1);
  state[name] = hostTensor("float64", v.shape as number[], rng.uniforms(n, -0.5, 0.5));
}
const alpha = [0.3, -0.2, 0.1];

/** J(α) = L_val(w − ξ ∇w L_train(w, α), α) as a function of α, evaluated by its own graph. */
async function unrolledObjective(): Promise<(a: number[]) => Promise<number>> {
  const g = new Graph({ float: "float64" });
  const train = batchInputs(g), val = batchInputs(g, "val/");
  const binding = loraInputs(g, cfg, { config: lora, gated: true });
  const { backward } = lmLoss(cfg, model.weights, train, binding);
  const params = [...binding.params.values()];
  const grads = gradients(backward.value, params, { seed: backward.seed });
  const stepped = new Map([...binding.params.keys()].map((n, i) => [n, sub(params[i], mul(grads[i], XI))]));
  const J = lmLoss(cfg, model.weights, val, { ...binding, params: stepped }).loss;
  const session = await createSession(serialize(g, { J }), { ...external, optimization: "basic" });
  return async (a) =>
    (await session.run({ ...batches, ...state, [GATE_LOGITS]: hostTensor("float64", [3], a) })).J
      .data[0] as number;
}

/** The search step's gate gradient for a hypergradient mode (SGD inner step with lr ξ). */
async function stepHypergradient(mode: Hypergradient): Promise<number[]> {
  const { graph, step } = buildSearchStep(cfg, model.weights, lora, { lora: sgd(), gates: sgd() }, {
    float: "float64",
    hypergradient: mode,
  });
  const session = await createSession(serialize(graph, step.outputs), {
    ...external,
    optimization: "basic",
  });
  const out = await session.run({
    ...batches,
    ...state,
    [GATE_LOGITS]: hostTensor("float64", [3], alpha),
    [lrInput("lora")]: hostTensor("float64", [], [XI]),
    [lrInput("gates")]: hostTensor("float64", [], [0.01]),
    [STEP_INPUT]: hostTensor("float64", [], [1]),
  });
  return Array.from(out["gates/hypergradient"].data as Float64Array);
}

Deno.test("unrolled hypergradient matches d/dα of the one-step unrolled objective; first order does not", async () => {
  const J = await unrolledObjective();
  const h = 1e-5;
  const exact: number[] = [];
  for (let k = 0; k < 3; k++) {
    const up = [...alpha], down = [...alpha];
    up[k] += h;
    down[k] -= h;
    exact.push(((await J(up)) - (await J(down))) / (2 * h));
  }
  const norm = Math.max(...exact.map(Math.abs));
  const err = (got: number[]) => Math.max(...got.map((v, k) => Math.abs(v - exact[k]))) / norm;
  const unrolled = err(await stepHypergradient("unrolled"));
  const first = err(await stepHypergradient("first-order"));
  assert.ok(norm > 1e-6, "the hypergradient must not vanish");
  assert.ok(unrolled < 1e-3, `unrolled: relative error ${unrolled.toExponential(2)}`);
  assert.ok(
    first > 10 * unrolled,
    `first order should be visibly off (${first.toExponential(2)} vs ${unrolled.toExponential(2)})`,
  );
  console.log(`relative error: unrolled ${unrolled.toExponential(2)}, first order ${first.toExponential(2)}`);
});

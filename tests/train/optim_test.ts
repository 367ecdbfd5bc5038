import assert from "node:assert/strict";
import { matmul, mul, pow, reduceMean, sub } from "../../src/graph/build.ts";
import { Graph, type Value } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { createSession, type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import {
  adamw,
  applyOptimizer,
  maxMagnitude,
  oneMinusPower,
  type Optimizer,
  sgd,
} from "../../src/train/optim.ts";
import { cosineSchedule } from "../../src/train/schedule.ts";
import { buildTrainStep, TrainLoop } from "../../src/train/step.ts";
import { Rng } from "../../src/util/random.ts";

/** A plain TypeScript AdamW (PyTorch semantics) with global-norm clipping, on flat arrays. */
function referenceAdamW(
  params: number[][],
  grads: number[][],
  m: number[][],
  v: number[][],
  t: number,
  lr: number,
  o: {
    beta1: number;
    beta2: number;
    eps: number;
    weightDecay: number;
    maxGradNorm: number;
    sharedSecondMoment?: boolean;
  },
) {
  const norm = Math.sqrt(grads.flat().reduce((s, x) => s + x * x, 0));
  const scale = Math.min(1, o.maxGradNorm / (norm + 1e-6));
  params.forEach((p, i) => {
    const meanSquare = grads[i].reduce((s, x) => s + (x * scale) ** 2, 0) / p.length;
    for (let k = 0; k < p.length; k++) {
      const g = grads[i][k] * scale;
      m[i][k] = o.beta1 * m[i][k] + (1 - o.beta1) * g;
      v[i][k] = o.beta2 * v[i][k] + (1 - o.beta2) * (o.sharedSecondMoment ? meanSquare : g * g);
      const mHat = m[i][k] / (1 - o.beta1 ** t), vHat = v[i][k] / (1 - o.beta2 ** t);
      p[k] -= lr * (mHat / (Math.sqrt(vHat) + o.eps) + o.weightDecay * p[k]);
    }
  });
  return norm;
}

/** Runs `optimizer` in a graph with gradients fed as inputs; returns a function doing one update. */
async function optimizerGraph(optimizer: Optimizer, shapes: number[][], float: "float32" | "float64") {
  const g = new Graph({ float });
  const states = shapes.map((shape, i) => ({
    param: g.input(`p${i}`, float, shape),
    grad: g.input(`g${i}`, float, shape),
    slots: optimizer.slots.map((s) => g.input(`p${i}/${s}`, float, shape)),
  }));
  const lr = g.input("lr", float, []), step = g.input("step", float, []);
  const { updates, gradNorm } = applyOptimizer(optimizer, states, { lr, step });
  const outputs: Record<string, Value> = { norm: gradNorm };
  updates.forEach((u, i) => {
    outputs[`p${i}'`] = u.param;
    u.slots.forEach((s, j) => (outputs[`p${i}/${optimizer.slots[j]}'`] = s));
  });
  const session = await createSession(serialize(g, outputs));
  return async (feeds: Record<string, HostTensor>) => await session.run(feeds);
}

for (
  const [float, sharedSecondMoment] of [["float64", false], ["float32", false], ["float64", true]] as const
) {
  const shared = sharedSecondMoment ? ", one second moment per tensor" : "";
  Deno.test(`AdamW graph matches a plain TypeScript AdamW over 6 steps (${float}, clipping and decay active${shared})`, async () => {
    const o = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1.5, sharedSecondMoment };
    const shapes = [[3, 4], [5]];
    const run = await optimizerGraph(adamw(o), shapes, float);
    const rng = new Rng(11);
    const params = shapes.map((s) => rng.uniforms(s.reduce((a, b) => a * b), -1, 1));
    const m = params.map((p) => p.map(() => 0)), v = params.map((p) => p.map(() => 0));
    let state: Record<string, HostTensor> = {};
    shapes.forEach((s, i) => {
      state[`p${i}`] = hostTensor(float, s, params[i]);
      state[`p${i}/m`] = hostTensor(float, s);
      state[`p${i}/v`] = hostTensor(float, s);
    });
    const lrAt = cosineSchedule(0.05, 6, 2);
    let clipped = 0;
    for (let t = 1; t <= 6; t++) {
      const grads = params.map((p) => p.map(() => rng.uniform(-1, 1)));
      const feeds: Record<string, HostTensor> = {
        ...state,
        lr: hostTensor(float, [], [lrAt(t)]),
        step: hostTensor(float, [], [t]),
      };
      grads.forEach((gr, i) => (feeds[`g${i}`] = hostTensor(float, shapes[i], gr)));
      const out = await run(feeds);
      const norm = referenceAdamW(params, grads, m, v, t, lrAt(t), o);
      if (norm > o.maxGradNorm) clipped++;
      assert.ok(Math.abs((out.norm.data[0] as number) - norm) <= 1e-6 * norm);
      state = {};
      shapes.forEach((_, i) => {
        for (const [key, want] of [[`p${i}`, params[i]], [`p${i}/m`, m[i]], [`p${i}/v`, v[i]]] as const) {
          const got = out[`${key}'`].data as Float64Array | Float32Array;
          const err = Math.max(...want.map((w, k) => Math.abs(got[k] - w) / Math.max(1, Math.abs(w))));
          assert.ok(err <= 1e-6, `${key} after step ${t}: error ${err}`);
          state[key] = out[`${key}'`];
        }
      });
    }
    assert.ok(clipped > 0, "the test must exercise clipping");
  });
}

Deno.test("Adam's bias correction 1 − βᵗ in float32 is within a few ulp of float64, where 1 − pow(β, t) is not", async () => {
  const betas = [0.9, 0.95, 0.999, 0.9999];
  const g = new Graph({ float: "float32" });
  const step = g.input("step", "float32", []);
  const outputs: Record<string, Value> = {};
  betas.forEach((b, i) => {
    outputs[`steady${i}`] = oneMinusPower(b, step);
    outputs[`naive${i}`] = sub(1, pow(g.scalar(b, "float32"), step));
  });
  const session = await createSession(serialize(g, outputs));
  let naiveWorst = 0;
  for (const t of [1, 2, 3, 7, 10, 30, 100, 1000, 5000, 1e5]) {
    const out = await session.run({ step: hostTensor("float32", [], [t]) });
    betas.forEach((b, i) => {
      const truth = -Math.expm1(t * Math.log(b));
      const err = (name: string) => Math.abs(Number(out[name].data[0]) - truth) / truth;
      assert.ok(err(`steady${i}`) <= 5e-7, `β ${b}, t ${t}: relative error ${err(`steady${i}`)}`);
      naiveWorst = Math.max(naiveWorst, err(`naive${i}`));
    });
  }
  // β = 0.999 rounds to 0.99900001 in float32: 1 − β is 1.3e-5 off before any arithmetic.
  assert.ok(naiveWorst > 1e-5, `the naive form's worst error ${naiveWorst}`);
});

Deno.test("SGD with momentum and weight decay matches PyTorch's update rule", async () => {
  const run = await optimizerGraph(sgd({ momentum: 0.9, weightDecay: 0.01 }), [[4]], "float64");
  let p = [1, -2, 0.5, 3], buf = [0, 0, 0, 0];
  let state = { p0: hostTensor("float64", [4], p), "p0/momentum": hostTensor("float64", [4]) };
  for (let t = 1; t <= 3; t++) {
    const grad = [0.1 * t, -0.2, 0.3, -0.4 * t];
    const out = await run({
      ...state,
      g0: hostTensor("float64", [4], grad),
      lr: hostTensor("float64", [], [0.1]),
      step: hostTensor("float64", [], [t]),
    });
    buf = buf.map((b, k) => 0.9 * b + grad[k] + 0.01 * p[k]);
    p = p.map((x, k) => x - 0.1 * buf[k]);
    p.forEach((x, k) => assert.ok(Math.abs((out["p0'"].data[k] as number) - x) < 1e-12));
    state = { p0: out["p0'"], "p0/momentum": out["p0/momentum'"] };
  }
});

Deno.test("a train step graph with in-graph AdamW fits a linear model", async () => {
  const g = new Graph();
  const x = g.input("x", "float32", ["N", 3]);
  const y = g.input("y", "float32", ["N", 1]);
  const w = g.input("w", "float32", [3, 1]);
  const err = sub(matmul(x, w), y);
  const step = buildTrainStep(reduceMean(mul(err, err), [0, 1]), [w], adamw({ weightDecay: 0 }));
  const loop = new TrainLoop(await createSession(serialize(g, step.outputs)), step, {
    w: hostTensor("float32", [3, 1]),
  });
  const rng = new Rng(3), truth = [0.5, -1, 2];
  const xs = rng.uniforms(24, -1, 1);
  const ys = [...Array(8).keys()].map((n) => truth.reduce((s, t, k) => s + t * xs[n * 3 + k], 0));
  const batch = { x: hostTensor("float32", [8, 3], xs), y: hostTensor("float32", [8, 1], ys) };
  const first = (await loop.step(batch, 0.05)).loss;
  let last = first;
  for (let i = 0; i < 300; i++) last = (await loop.step(batch, 0.05)).loss;
  assert.ok(last < first * 1e-3, `loss went from ${first} to ${last}`);
  const got = Array.from((await loop.params()).w.data as Float32Array);
  got.forEach((v, k) => assert.ok(Math.abs(v - truth[k]) < 0.02, `w[${k}] = ${v}, want ${truth[k]}`));
  assert.equal(loop.steps, 301);
});

Deno.test("optimizer options are validated with the offending value", () => {
  assert.throws(() => adamw({ beta1: 1 }), /'beta1' must be in \[0, 1\), got 1/);
  assert.throws(() => sgd({ momentum: -0.5 }), /'momentum' must be in \[0, 1\), got -0.5/);
});

Deno.test("maxMagnitude is the largest |x| over several tensors, and NaN or infinite when any element is", async () => {
  const g = new Graph({ float: "float32" });
  const a = g.input("a", "float32", [2, 3]), b = g.input("b", "float32", [4]);
  const session = await createSession(serialize(g, { max: maxMagnitude([a, b]) }));
  const max = async (x: number[], y: number[]) =>
    Number(
      (await session.run({ a: hostTensor("float32", [2, 3], x), b: hostTensor("float32", [4], y) })).max
        .data[0],
    );
  const rng = new Rng(3);
  const x = rng.uniforms(6, -2, 2), y = rng.uniforms(4, -2, 2);
  y[2] = -7.25;
  assert.ok(Math.abs((await max(x, y)) - 7.25) < 1e-5);
  x[4] = NaN;
  assert.ok(Number.isNaN(await max(x, y)), "a NaN parameter");
  x[4] = Infinity;
  assert.ok(!Number.isFinite(await max(x, y)), "an infinite parameter");
});

/** The feeds a session takes. */
const pick = (feeds: Record<string, HostTensor>, names: readonly string[]) =>
  Object.fromEntries(names.map((n) => [n, feeds[n]]));

Deno.test("an elementwise optimizer updates a group as one packed vector: the per-tensor result, fewer nodes", async () => {
  const shapes = [[2, 3], [4], [3, 2, 2]];
  const rng = new Rng(11);
  const random = (n: number, lo: number, hi: number) =>
    Array.from({ length: n }, () => lo + (hi - lo) * rng.next());
  const feeds: Record<string, HostTensor> = {
    lr: hostTensor("float32", [], [0.05]),
    step: hostTensor("float32", [], [3]),
  };
  shapes.forEach((s, i) => {
    const n = s.reduce((a, b) => a * b, 1);
    feeds[`p${i}`] = hostTensor("float32", s, random(n, -1, 1));
    feeds[`g${i}`] = hostTensor("float32", s, random(n, -2, 2));
    feeds[`m${i}`] = feeds[`momentum${i}`] = hostTensor("float32", s, random(n, -0.1, 0.1));
    feeds[`v${i}`] = hostTensor("float32", s, random(n, 0, 0.01));
  });
  const run = async (optimizer: Optimizer) => {
    const g = new Graph({ name: "update" });
    const states = shapes.map((s, i) => ({
      param: g.input(`p${i}`, "float32", s),
      grad: g.input(`g${i}`, "float32", s),
      slots: optimizer.slots.map((k) => g.input(`${k}${i}`, "float32", s)),
    }));
    const lr = g.input("lr", "float32", []), step = g.input("step", "float32", []);
    const r = applyOptimizer(optimizer, states, { lr, step });
    const outputs: Record<string, Value> = { norm: r.gradNorm, max: r.paramMax };
    r.updates.forEach((u, i) => {
      outputs[`next/p${i}`] = u.param;
      u.slots.forEach((slot, j) => (outputs[`next/${optimizer.slots[j]}${i}`] = slot));
    });
    const session = await createSession(serialize(g, outputs));
    return { nodes: g.nodes.length, out: await session.run(pick(feeds, session.inputNames)) };
  };
  for (
    const optimizer of [adamw({ maxGradNorm: 1 }), sgd({ momentum: 0.9, weightDecay: 0.1, maxGradNorm: 1 })]
  ) {
    assert.equal(optimizer.elementwise, true);
    const [packed, apart] = [await run(optimizer), await run({ ...optimizer, elementwise: false })];
    assert.ok(
      packed.nodes < apart.nodes,
      `${optimizer.name}: ${packed.nodes} nodes packed, ${apart.nodes} apart`,
    );
    for (const [name, t] of Object.entries(apart.out)) {
      assert.deepEqual(packed.out[name].dims, t.dims, name);
      const x = packed.out[name].data as Float32Array;
      (t.data as Float32Array).forEach((y, k) =>
        assert.ok(Math.abs(x[k] - y) <= 1e-6 * Math.max(1, Math.abs(y)), `${name}[${k}]: ${x[k]} vs ${y}`)
      );
    }
  }
  assert.equal(adamw({ sharedSecondMoment: true }).elementwise, false); // a mean over its own tensor
});

/**
 * The LM-head loss in token blocks against the fused SoftmaxCrossEntropyLoss op and ordinary autodiff: the
 * blocks are a pure re-arrangement (float64, to rounding), at any token count, including blocks left empty; and
 * scoring's token log-probabilities, likewise blocked.
 */

import assert from "node:assert/strict";
import { gradients } from "../../src/graph/autodiff.ts";
import { Graph } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { liveNodes } from "../../src/graph/validate.ts";
import { lmHeadLoss, tokenLogprobs } from "../../src/model/lm_loss.ts";
import { createSession, hostTensor } from "../../src/runtime/session.ts";
import { Rng } from "../../src/util/random.ts";

const [D, V] = [6, 40];

/** A session computing loss and d loss / d hidden with the head split so that a block holds `chunk` classes. */
async function headSession(chunk: number) {
  const g = new Graph({ float: "float64" });
  const hidden = g.input("hidden", "float64", ["N", D]);
  const weight = g.input("weight", "float64", [V, D]);
  const labels = g.input("labels", "int64", ["N"]);
  const { loss, backward } = lmHeadLoss(hidden, weight, labels, { chunk });
  const [dHidden] = gradients(backward.value, [hidden], { seed: backward.seed });
  return await createSession(serialize(g, { loss, dHidden }), { optimization: "basic" });
}

Deno.test("LM-head loss in token blocks: loss and d hidden equal the whole head's, for any token count", async () => {
  const whole = await headSession(V);
  const rng = new Rng(3);
  const weight = hostTensor("float64", [V, D], rng.uniforms(V * D, -1, 1));
  // chunk 10: 4 blocks; chunk 1: 40 blocks, more than the tokens of every batch here (empty blocks).
  for (const chunk of [10, 3, 1]) {
    const blocked = await headSession(chunk);
    for (const N of [1, 5, 13, 64]) {
      const feeds = {
        hidden: hostTensor("float64", [N, D], rng.uniforms(N * D, -2, 2)),
        weight,
        labels: hostTensor("int64", [N], [...Array(N)].map((_, i) => i % 4 === 1 ? -100 : rng.int(0, V - 1))),
      };
      if (N === 1) feeds.labels.data[0] = 7n; // one token, not ignored
      const [a, b] = [await whole.run(feeds), await blocked.run(feeds)];
      const diff = (name: string) =>
        Math.max(
          ...Array.from(a[name].data as Float64Array, (x, i) => Math.abs(x - (b[name].data[i] as number))),
        );
      assert.deepEqual(b.dHidden.dims, [N, D]);
      assert.ok(diff("loss") < 1e-12, `chunk ${chunk}, N ${N}: loss differs by ${diff("loss")}`);
      assert.ok(diff("dHidden") < 1e-12, `chunk ${chunk}, N ${N}: d hidden differs by ${diff("dHidden")}`);
    }
    await blocked.release();
  }
  await whole.release();
});

Deno.test("LM-head loss in token blocks: each logit is computed once (one product with the head per block)", () => {
  for (const [chunk, blocks] of [[10, 4], [7, 6], [40, 1]]) {
    const g = new Graph({ float: "float64" });
    const hidden = g.input("hidden", "float64", ["N", D]);
    const weight = g.input("weight", "float64", [V, D]);
    const { loss, backward } = lmHeadLoss(hidden, weight, g.input("labels", "int64", ["N"]), { chunk });
    const [dHidden] = gradients(backward.value, [hidden], { seed: backward.seed });
    const products = liveNodes(g, [loss, dHidden]).filter((n) =>
      n.op === "MatMul" && n.outputs[0].shape.at(-1) === V
    );
    assert.equal(products.length, blocks, `chunk ${chunk}`);
  }
});

Deno.test("scoring's token log-probabilities in token blocks equal the fused op's, for any token count, with no [N, V] value", async () => {
  const session = async (chunk: number) => {
    const g = new Graph({ float: "float64" });
    const hidden = g.input("hidden", "float64", ["N", D]);
    const weight = g.input("weight", "float64", [V, D]);
    const lp = tokenLogprobs(hidden, weight, g.input("targets", "int64", ["N"]), { chunk });
    const whole = liveNodes(g, [lp]).flatMap((n) => n.outputs).filter((v) => v.shape.join() === `N,${V}`);
    assert.equal(whole.length > 0, chunk >= V, `chunk ${chunk}: [N, V] values ${whole.map((v) => v.name)}`);
    return await createSession(serialize(g, { lp }), { optimization: "basic" });
  };
  const whole = await session(V);
  const rng = new Rng(5);
  const weight = hostTensor("float64", [V, D], rng.uniforms(V * D, -1, 1));
  for (const chunk of [10, 3]) {
    const blocked = await session(chunk);
    for (const N of [1, 5, 13]) {
      const feeds = {
        hidden: hostTensor("float64", [N, D], rng.uniforms(N * D, -2, 2)),
        weight,
        targets: hostTensor(
          "int64",
          [N],
          [...Array(N)].map((_, i) => i % 4 === 1 ? -100 : rng.int(0, V - 1)),
        ),
      };
      const [a, b] = [await whole.run(feeds), await blocked.run(feeds)];
      assert.deepEqual(b.lp.dims, [N]);
      const x = a.lp.data as Float64Array, y = b.lp.data as Float64Array;
      const diff = Math.max(...Array.from(x, (v, i) => Math.abs(v - y[i])));
      assert.ok(diff < 1e-12, `chunk ${chunk}, N ${N}: log-probabilities differ by ${diff}`);
      assert.ok(x.every((v, i) => (i % 4 === 1 && N > 1) === (v === 0)), "0 exactly where ignored");
    }
    await blocked.release();
  }
  await whole.release();
});

Deno.test("LM head with its weight stored in another type: cast one vocabulary slice at a time, the same loss, d hidden and log-probabilities as the weight in the compute type", async () => {
  /** Loss, d hidden and log-probabilities with the weight given as `weightType` (float32: cast in slices). */
  const session = async (weightType: "float32" | "float64", chunk: number, slice: number) => {
    const g = new Graph({ float: "float64" });
    const hidden = g.input("hidden", "float64", ["N", D]);
    const weight = g.input("weight", weightType, [V, D]);
    const labels = g.input("labels", "int64", ["N"]);
    const { loss, backward } = lmHeadLoss(hidden, weight, labels, { chunk, slice });
    const [dHidden] = gradients(backward.value, [hidden], { seed: backward.seed });
    const lp = tokenLogprobs(hidden, weight, labels, { chunk, slice });
    // The float32 weight is only ever cast a slice of at most `slice` rows at a time.
    const casts = liveNodes(g, [loss, dHidden, lp]).filter((n) =>
      n.op === "Cast" && n.inputs[0].dtype === "float32"
    );
    assert.equal(casts.length > 0, weightType === "float32");
    assert.ok(casts.every((n) => Number(n.outputs[0].shape[0]) <= slice), `slice ${slice}`);
    return await createSession(serialize(g, { loss, dHidden, lp }), { optimization: "basic" });
  };
  const rng = new Rng(7);
  const values = Float32Array.from(rng.uniforms(V * D, -1, 1)); // float32 values, exact in float64 too
  for (const [chunk, slice] of [[10, 7], [40, 7], [40, 40], [3, 16]]) {
    const [wide, narrow] = [await session("float64", chunk, slice), await session("float32", chunk, slice)];
    for (const N of [1, 5, 13]) {
      const feeds = {
        hidden: hostTensor("float64", [N, D], rng.uniforms(N * D, -2, 2)),
        labels: hostTensor("int64", [N], [...Array(N)].map((_, i) => i % 4 === 1 ? -100 : rng.int(0, V - 1))),
      };
      if (N === 1) feeds.labels.data[0] = 7n;
      const a = await wide.run({ ...feeds, weight: hostTensor("float64", [V, D], Array.from(values)) });
      const b = await narrow.run({ ...feeds, weight: hostTensor("float32", [V, D], values) });
      for (const name of ["loss", "dHidden", "lp"]) {
        const d = Math.max(
          ...Array.from(a[name].data as Float64Array, (x, i) => Math.abs(x - (b[name].data[i] as number))),
        );
        assert.ok(d < 1e-12, `chunk ${chunk}, slice ${slice}, N ${N}: ${name} differs by ${d}`);
      }
    }
    await wide.release();
    await narrow.release();
  }
});

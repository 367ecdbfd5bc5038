/**
 * Graphs that compute in float16: numbers become float16 constants, every op of the closed set that takes floats
 * runs in float16 on onnxruntime's CPU provider and agrees with the same builder code in float32 to float16's
 * rounding, gradients flow through casts into float32 parameters, and float16 tensors cross the session boundary
 * as their bits.
 */

import assert from "node:assert/strict";
import { gradients } from "../../src/graph/autodiff.ts";
import * as b from "../../src/graph/build.ts";
import { isFloat } from "../../src/graph/dtype.ts";
import { Graph, GraphError, type Value } from "../../src/graph/graph.ts";
import { OP_DEFS, type OpType } from "../../src/graph/ops.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { createSession, type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { f16ToF32, f32ToF16 } from "../../src/util/float16.ts";
import { Rng } from "../../src/util/random.ts";

const rng = new Rng(16);

/** An input: float values are drawn in `range` and rounded to float16, so only the ops' own rounding differs. */
interface Spec {
  shape: number[];
  int?: number[];
  range?: [number, number];
}

/** What each op's case emitted (checked against the op set at the end). */
const covered = new Set<OpType>();

/**
 * Builds `f` in a float32 and a float16 graph over the same inputs (float inputs fed as float32 and cast to the
 * graph's type) and asserts the outputs agree: |y16 − y32| ≤ 2e-3·|y32| + 1e-3, or exactly for bool and int64.
 */
function agrees(name: string, specs: Spec[], f: (...x: Value[]) => Value | Value[]) {
  const feeds: Record<string, HostTensor> = {};
  specs.forEach((s, i) => {
    const n = s.shape.reduce((a, c) => a * c, 1);
    feeds[`x${i}`] = s.int ? hostTensor("int64", s.shape, s.int) : hostTensor(
      "float32",
      s.shape,
      f16ToF32(f32ToF16(Float32Array.from(rng.uniforms(n, ...(s.range ?? [-2, 2]))))),
    );
  });
  Deno.test(`float16 ${name} agrees with float32`, async () => {
    const run = async (float: "float32" | "float16") => {
      const g = new Graph({ float });
      const inputs = specs.map((s, i) =>
        s.int ? g.input(`x${i}`, "int64", s.shape) : b.cast(g.input(`x${i}`, "float32", s.shape), g.float)
      );
      const ys = [f(...inputs)].flat();
      for (const node of g.nodes) if (float === "float16") covered.add(node.op);
      const outputs = Object.fromEntries(
        ys.map((y, j) => [`y${j}`, isFloat(y.dtype) ? b.cast(y, "float32") : y]),
      );
      if (float === "float16") {
        assert.ok(ys.some((y) => y.dtype !== "float32"), `${name}: nothing in float16`);
      }
      const session = await createSession(serialize(g, outputs));
      const out = await session.run(feeds);
      await session.release();
      return out;
    };
    const [wide, half] = [await run("float32"), await run("float16")];
    for (const [key, t] of Object.entries(wide)) {
      const a = Array.from(t.data as ArrayLike<number | bigint | boolean>, Number);
      const h = Array.from(half[key].data as ArrayLike<number | bigint | boolean>, Number);
      assert.equal(h.length, a.length);
      a.forEach((v, i) => {
        const tol = t.dtype === "float32" ? 2e-3 * Math.abs(v) + 1e-3 : 0;
        assert.ok(Math.abs(h[i] - v) <= tol, `${name} ${key}[${i}]: float16 ${h[i]}, float32 ${v}`);
      });
    }
  });
}

const pos: [number, number] = [0.5, 2];
agrees(
  "Add/Sub/Mul/Div with number operands",
  [{ shape: [3, 4] }, { shape: [4], range: pos }],
  (x, y) => b.div(b.sub(b.mul(b.add(x, 0.1), y), 1.5), y),
);
agrees(
  "Pow/Min/Max/Sum",
  [{ shape: [3, 4], range: pos }, { shape: [4] }],
  (x, y) => b.sum(b.pow(x, 1.5), b.minimum(x, y), b.maximum(x, y)),
);
agrees("Where/Equal/Less/Greater", [{ shape: [3, 4] }, { shape: [3, 4] }], (x, y) => [
  b.where(b.less(x, y), x, y),
  b.equal(x, x),
  b.greater(x, y),
]);
agrees("unary ops", [{ shape: [2, 5], range: pos }], (x) =>
  b.sum(
    b.neg(b.sqrt(x)),
    b.reciprocal(x),
    b.exp(x),
    b.log(x),
    b.sigmoid(x),
    b.tanh(x),
    b.sin(x),
    b.cos(x),
    b.identity(x),
  ));
agrees("MatMul, batched and broadcast", [{ shape: [2, 3, 8] }, { shape: [8, 5] }], (x, w) => b.matmul(x, w));
agrees("reductions and ArgMax", [{ shape: [3, 4, 5], range: pos }], (x) => [
  b.reduceSum(x, [1]),
  b.reduceMean(x, [-1], true),
  b.reduceMax(x, [0, 2]),
  b.reduceProd(x, [2]),
  b.argMax(x, 1),
]);
agrees("Softmax, LogSoftmax and SoftmaxCrossEntropyLoss", [{ shape: [4, 6] }, {
  shape: [4],
  int: [0, -100, 5, 2],
}], (x, labels) => [b.softmax(x), b.logSoftmax(x, 0), ...Object.values(b.softmaxCrossEntropy(x, labels))]);
agrees("layout ops", [{ shape: [2, 3, 4] }], (x) => [
  b.reshape(x, [6, 4]),
  b.transpose(x, [2, 0, 1]),
  b.slice(x, [1], [Infinity], [2]),
  b.concat([x, x], 1),
  ...b.split(x, [1, 3], 2),
  b.squeeze(b.unsqueeze(x, [0]), [0]),
  b.expand(b.slice(x, [0], [1], [0]), [3, 3, 4]),
]);
agrees("Gather, ScatterND, Pad, Trilu, Shape, ConstantOfShape", [
  { shape: [4, 3] },
  { shape: [2], int: [3, 1] },
  { shape: [4], int: [1, 0, 0, 2] },
  { shape: [], int: [1] },
], (x, idx, pads, k) => [
  b.gather(x, idx),
  b.scatterND(x, b.unsqueeze(idx, [1]), b.neg(b.gather(x, idx))), // "add" has no float16 CPU kernel
  b.pad(x, pads, [5, 5]),
  b.trilu(x, false, k),
  b.shapeOf(x),
  b.fullLike(x, 0.25),
]);

Deno.test("every op of the closed set that takes floats ran in float16", () => {
  const boolOnly: OpType[] = ["And", "Not"];
  const missing = (Object.keys(OP_DEFS) as OpType[]).filter((op) =>
    !covered.has(op) && !boolOnly.includes(op)
  );
  assert.deepEqual(missing, []);
});

Deno.test("a float16 graph stores numbers as float16 constants and keeps its wide type float32", () => {
  const g = new Graph({ float: "float16" });
  assert.equal(g.wide, "float32");
  const y = b.mul(g.input("x", "float16", [2]), 0.1);
  const c = y.producer!.inputs[1];
  assert.equal(c.dtype, "float16");
  assert.deepEqual(c.init, { kind: "inline", data: f32ToF16(new Float32Array([0.1])) });
  assert.equal(new Graph({ float: "float64" }).wide, "float64");
  assert.throws(
    () => new Graph({ float: "bfloat16" as "float16" }),
    (e: Error) => e instanceof GraphError && e.message.includes("'bfloat16'"),
  );
});

Deno.test("the gradient of a float16 Gather with repeated indices is summed in float32", async () => {
  const run = async (float: "float32" | "float16") => {
    const g = new Graph({ float });
    const table = g.input("table", "float32", [3, 2]);
    const ids = g.input("ids", "int64", [5]);
    const loss = b.cast(b.reduceSum(b.gather(b.cast(table, g.float), ids), [0, 1]), "float32");
    const [dTable] = gradients(loss, [table]);
    const session = await createSession(serialize(g, { dTable }));
    const feeds = { table: hostTensor("float32", [3, 2]), ids: hostTensor("int64", [5], [2, 0, 2, 2, 0]) };
    return Array.from((await session.run(feeds)).dTable.data as Float32Array);
  };
  assert.deepEqual(await run("float16"), [2, 2, 0, 0, 3, 3]);
  assert.deepEqual(await run("float16"), await run("float32"));
});

Deno.test("gradients flow through casts into float32 parameters", async () => {
  const g = new Graph({ float: "float16" });
  const w = g.input("w", "float32", [3]);
  const x = g.input("x", "float32", [2, 3]);
  // loss = Σ (x · w)² in float16, read out in float32: d loss / d w = 2 Σ_rows (x · w) x.
  const y = b.mul(b.cast(x, g.float), b.cast(w, g.float));
  const loss = b.cast(b.reduceSum(b.mul(y, y), [0, 1]), "float32");
  const [dW] = gradients(loss, [w]);
  assert.equal(dW.dtype, "float32");
  const session = await createSession(serialize(g, { dW }));
  const [wv, xv] = [[0.5, -1, 2], [1, 2, 3, -1, 0.25, 4]];
  const { dW: out } = await session.run({
    w: hostTensor("float32", [3], wv),
    x: hostTensor("float32", [2, 3], xv),
  });
  const expected = wv.map((wj, j) => 2 * (xv[j] * xv[j] * wj + xv[3 + j] * xv[3 + j] * wj));
  assert.deepEqual(Array.from(out.data as Float32Array), expected); // every step is exact in float16
});

Deno.test("float16 tensors go into and come out of a session as their bits (Uint16Array)", async () => {
  const g = new Graph({ float: "float16" });
  const x = g.input("x", "float16", [1, "N"]);
  const session = await createSession(serialize(g, { y: b.add(b.concat([x, x], 1), 1) }));
  for (const n of [2, 0]) {
    const bits = f32ToF16(Float32Array.from({ length: n }, (_, i) => i + 0.5));
    const { y } = await session.run({ x: hostTensor("float16", [1, n], bits) });
    assert.equal(y.dtype, "float16");
    assert.ok(y.data instanceof Uint16Array, `${y.data.constructor.name}`);
    assert.deepEqual(
      Array.from(f16ToF32(y.data as Uint16Array)),
      [...f16ToF32(bits), ...f16ToF32(bits)].map((v) => v + 1),
    );
  }
  await session.release();
});

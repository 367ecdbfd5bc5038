import assert from "node:assert/strict";
import onnxProto from "onnx-proto";
import * as b from "../../src/graph/build.ts";
import { gradients } from "../../src/graph/autodiff.ts";
import { Graph, type Value } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { createSession, hostTensor } from "../../src/runtime/session.ts";
import { checkGradients } from "./gradcheck.ts";

/** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · w. */
function rmsNorm(x: Value, w: Value): Value {
  return b.mul(b.div(x, b.sqrt(b.add(b.reduceMean(b.mul(x, x), [-1], true), 1e-5))), w);
}

Deno.test("fan-out: a value used several times gets the sum of its gradients", () =>
  checkGradients((x) => b.add(b.mul(x, b.exp(x)), b.mul(b.sigmoid(x), x)), [{ shape: [3, 4] }]));

Deno.test("a Llama-style block (RMSNorm, causal softmax attention, SwiGLU, residuals) differentiates exactly", () =>
  checkGradients(
    (x, wn, wq, wk, wv, wg, wu, wd) => {
      const h = rmsNorm(x, wn); // [T, D]
      const scores = b.mul(b.matmul(b.matmul(h, wq), b.transpose(b.matmul(h, wk))), 0.5); // [T, T]
      const mask = b.trilu(b.full(x.graph, [3, 3], 1)); // lower triangle of ones
      const masked = b.where(b.equal(mask, 0), -1e9, scores);
      const a = b.add(x, b.matmul(b.softmax(masked), b.matmul(h, wv)));
      const gate = b.matmul(a, wg);
      return b.add(a, b.matmul(b.mul(b.mul(gate, b.sigmoid(gate)), b.matmul(a, wu)), wd));
    },
    [[3, 4], [4], [4, 4], [4, 4], [4, 4], [4, 5], [4, 5], [5, 4]].map((shape) => ({ shape })),
  ));

Deno.test("frozen layers stop the walk: no backward is built below the lowest trainable weight", () => {
  const g = new Graph();
  let h = g.input("x", "float32", ["B", 8]);
  const weights: Value[] = [];
  for (let l = 0; l < 4; l++) {
    h = g.scope(`model.layers.${l}`, () => {
      const w = l < 2
        ? g.initializer(`w${l}`, [8, 8], new Float32Array(64))
        : g.input(`w${l}`, "float32", [8, 8]);
      weights.push(w);
      return b.tanh(b.matmul(h, w));
    });
  }
  const loss = b.reduceSum(h, [0, 1]);
  const [d2, d3] = gradients(loss, [weights[2], weights[3]]);
  const model = onnxProto.onnx.ModelProto.decode(serialize(g, { d2, d3 }));
  const names = model.graph!.node!.map((n) => n.name!);
  const backward = names.filter((n) => n.startsWith("grad("));
  assert.ok(backward.some((n) => n.startsWith("grad(model.layers.2/")), "layer 2 must have a backward");
  assert.deepEqual(backward.filter((n) => /grad\(model\.layers\.[01]\//.test(n)), []);
  // Forward matmuls of layers 0–3, plus dW3, dH2 (into layer 2) and dW2: nothing for the input of layer 2.
  assert.equal(model.graph!.node!.filter((n) => n.opType === "MatMul").length, 4 + 3);
});

Deno.test("a value the loss does not depend on is an error, or zeros with allowUnused", () => {
  const g = new Graph();
  const x = g.input("x", "float32", [2]);
  const unused = g.input("lonely", "float32", [3]);
  const loss = b.reduceSum(b.mul(x, x), [0]);
  assert.throws(() => gradients(loss, [unused]), /does not depend on 'lonely' float32 \[3\]/);
  const [zero] = gradients(loss, [unused], { allowUnused: true });
  assert.deepEqual(zero.shape, [3]);
});

Deno.test("a non-differentiable op between the loss and a requested value is named", () => {
  const g = new Graph();
  const x = g.input("x", "float32", [2, 3]);
  const loss = b.reduceSum(b.reduceMax(x, [1]), [0]);
  assert.throws(() => gradients(loss, [x]), /node 'ReduceMax_0' \(ReduceMax\) is not differentiable/);
});

Deno.test("integer inputs cannot be differentiated", () => {
  const g = new Graph();
  const ids = g.input("ids", "int64", [4]);
  const emb = g.input("emb", "float32", [10, 2]);
  const loss = b.reduceSum(b.gather(emb, ids), [0, 1]);
  assert.throws(
    () => gradients(loss, [ids]),
    /cannot differentiate with respect to 'ids' int64 \[4\]: not a float/,
  );
});

Deno.test("constants stop the gradient: d/dx of x·c with c = 2x held constant is c, not 4x", async () => {
  const g = new Graph({ float: "float64" });
  const x = g.input("x", "float64", [3]);
  const held = b.mul(x, 2);
  const loss = b.reduceSum(b.mul(x, held), [0]);
  const [stopped] = gradients(loss, [x], { constants: [held] });
  const [full] = gradients(loss, [x]);
  const session = await createSession(serialize(g, { stopped, full }));
  const out = await session.run({ x: hostTensor("float64", [3], [1, -2, 0.5]) });
  assert.deepEqual(Array.from(out.stopped.data as Float64Array), [2, -4, 1]);
  assert.deepEqual(Array.from(out.full.data as Float64Array), [4, -8, 2]);
});

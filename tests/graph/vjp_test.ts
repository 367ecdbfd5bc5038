import assert from "node:assert/strict";
import * as b from "../../src/graph/build.ts";
import { apply1, type Value } from "../../src/graph/graph.ts";
import type { OpType } from "../../src/graph/ops.ts";
import { NON_DIFFERENTIABLE, VJP } from "../../src/graph/vjp.ts";
import { Rng } from "../../src/util/random.ts";
import { checkGradients, type CheckOptions, type InputSpec, randomShape } from "./gradcheck.ts";

const rng = new Rng(2026);
const [A, B, C] = randomShape(rng, 3);
const [M, K, N] = randomShape(rng, 3);
const pos: [number, number] = [0.5, 2];
const tested = new Set<OpType>();

function check(
  op: OpType,
  label: string,
  f: (...x: Value[]) => Value | Value[],
  specs: InputSpec[],
  o?: CheckOptions,
) {
  tested.add(op);
  Deno.test(`VJP ${op}: ${label}`, () => checkGradients(f, specs, o));
}

const sym = { bind: { B: 3, T: 4 } };
const labels = (n: number, classes: number) =>
  [...Array(n).keys()].map((i) => (i === 1 ? -100 : (i * 7) % classes));

check("Add", `[${A},${B},${C}] + [${B},1]`, b.add, [{ shape: [A, B, C] }, { shape: [B, 1] }]);
check("Add", "symbolic [B,3] + [3]", b.add, [{ shape: ["B", 3] }, { shape: [3] }], sym);
check("Sub", `[1,${B}] - [${A},1]`, b.sub, [{ shape: [1, B] }, { shape: [A, 1] }]);
check("Mul", `[${A},${B},${C}] * [${C}]`, b.mul, [{ shape: [A, B, C] }, { shape: [C] }]);
check("Div", `[${A},${B}] / [${B}]`, b.div, [{ shape: [A, B] }, { shape: [B], range: pos }]);
check("Pow", `[${A},${B}] ** [${B}]`, b.pow, [{ shape: [A, B], range: pos }, { shape: [B], range: pos }]);
check("Min", `[${A},${B}] min [${B}]`, b.minimum, [{ shape: [A, B] }, { shape: [B] }]);
check("Max", `[${A},${B}] max [${A},1]`, b.maximum, [{ shape: [A, B] }, { shape: [A, 1] }]);
check("Sum", "three operands, broadcasting", b.sum, [{ shape: [A, B] }, { shape: [B] }, { shape: [A, 1] }]);
check("Where", "bool [A,B] ? [A,B] : [B]", b.where, [{ shape: [A, B], dtype: "bool" }, { shape: [A, B] }, {
  shape: [B],
}]);
check("Neg", `[${A},${B}]`, b.neg, [{ shape: [A, B] }]);
check("Sqrt", `[${A},${B}]`, b.sqrt, [{ shape: [A, B], range: pos }]);
check("Reciprocal", `[${A},${B}]`, b.reciprocal, [{ shape: [A, B], range: pos }]);
check("Exp", `[${A},${B}]`, b.exp, [{ shape: [A, B] }]);
check("Log", `[${A},${B}]`, b.log, [{ shape: [A, B], range: pos }]);
check("Sigmoid", `[${A},${B}]`, b.sigmoid, [{ shape: [A, B], range: [-3, 3] }]);
check("Tanh", `[${A},${B}]`, b.tanh, [{ shape: [A, B], range: [-2, 2] }]);
check("Sin", `[${A},${B}]`, b.sin, [{ shape: [A, B], range: [-3, 3] }]);
check("Cos", `[${A},${B}]`, b.cos, [{ shape: [A, B], range: [-3, 3] }]);
check("Identity", `[${A}]`, b.identity, [{ shape: [A] }]);
check("Cast", "float64 → float64", (x) => apply1(x.graph, "Cast", [x], { to: "float64" }), [{
  shape: [A, B],
}]);
check("MatMul", `[${M},${K}] @ [${K},${N}]`, b.matmul, [{ shape: [M, K] }, { shape: [K, N] }]);
check("MatMul", "batched @ shared weight", b.matmul, [{ shape: [A, M, K] }, { shape: [K, N] }]);
check("MatMul", "batched @ batched", b.matmul, [{ shape: [A, M, K] }, { shape: [A, K, N] }]);
check("MatMul", "broadcast batch dims", b.matmul, [{ shape: [2, 1, M, K] }, { shape: [3, K, N] }]);
check("MatMul", "symbolic [B,T,K] @ [K,N]", b.matmul, [{ shape: ["B", "T", K] }, { shape: [K, N] }], sym);
check("ReduceSum", "axis 1", (x) => b.reduceSum(x, [1]), [{ shape: [A, B, C] }]);
check("ReduceSum", "axes 0,2 keepdims", (x) => b.reduceSum(x, [0, 2], true), [{ shape: [A, B, C] }]);
check("ReduceMean", "last axis", (x) => b.reduceMean(x, [-1]), [{ shape: [A, B, C] }]);
check("ReduceMean", "symbolic axis", (x) => b.reduceMean(x, [0]), [{ shape: ["B", C] }], sym);
check("Softmax", "last axis", (x) => b.softmax(x), [{ shape: [A, B] }]);
check("Softmax", "axis 0", (x) => b.softmax(x, 0), [{ shape: [A, B] }]);
check("LogSoftmax", "last axis", (x) => b.logSoftmax(x), [{ shape: [A, B] }]);
check("LogSoftmax", "middle axis", (x) => b.logSoftmax(x, 1), [{ shape: [A, B, C] }]);
for (const reduction of ["mean", "sum", "none"] as const) {
  check(
    "SoftmaxCrossEntropyLoss",
    `${reduction}, one ignored label`,
    (s, l) => b.softmaxCrossEntropy(s, l, { reduction }).loss,
    [{ shape: [5, C + 2] }, { shape: [5], dtype: "int64", values: labels(5, C + 2) }],
  );
}
check(
  "SoftmaxCrossEntropyLoss",
  "loss and log-probabilities both used",
  (s, l) => Object.values(b.softmaxCrossEntropy(s, l)),
  [{ shape: [4, C] }, { shape: [4], dtype: "int64", values: labels(4, C) }],
);
check("Reshape", "[A,B,C] → [A,B·C]", (x) => b.reshape(x, [A, B * C]), [{ shape: [A, B, C] }]);
check("Reshape", "symbolic flatten [B,T,C] → [B*T,C]", (x) => b.flatten(x), [{ shape: ["B", "T", C] }], sym);
check("Transpose", "perm 2,0,1", (x) => b.transpose(x, [2, 0, 1]), [{ shape: [A, B, C] }]);
check("Slice", "middle of last axis", (x) => b.slice(x, [1], [4], [2]), [{ shape: [A, B, 6] }]);
check("Slice", "negative bounds, two axes", (x) => b.slice(x, [-2, 0], [Infinity, -1], [0, 1]), [{
  shape: [4, 5],
}]);
check("Slice", "symbolic axis from 1", (x) => b.slice(x, [1], [Infinity], [0]), [{ shape: ["T", C] }], sym);
check("Slice", "symbolic axis to -1", (x) => b.slice(x, [0], [-1], [0]), [{ shape: ["T", C] }], sym);
check(
  "Slice",
  "symbolic axis, negative start",
  (x) => b.slice(x, [-3], [-1], [0]),
  [{ shape: ["T", C] }],
  sym,
);
check("Concat", "axis 1", (x, y) => b.concat([x, y], 1), [{ shape: [A, 2, C] }, { shape: [A, 3, C] }]);
check(
  "Concat",
  "symbolic parts",
  (x, y) => b.concat([x, y], 0),
  [{ shape: ["T", C] }, { shape: [2, C] }],
  sym,
);
check("Split", "both parts used", (x) => b.split(x, [2, 3], 1), [{ shape: [A, 5] }]);
check("Split", "one part unused", (x) => b.split(x, [2, 3], -1)[1], [{ shape: [A, 5] }]);
check("Unsqueeze", "axes 0 and 3", (x) => b.unsqueeze(x, [0, 3]), [{ shape: [A, B] }]);
check("Squeeze", "axis 1", (x) => b.squeeze(x, [1]), [{ shape: [A, 1, B] }]);
check("Expand", `[${B},1] → [${A},${B},${C}]`, (x) => b.expand(x, [A, B, C]), [{ shape: [B, 1] }]);
check("Gather", "axis 0, repeated indices", (d, i) => b.gather(d, i), [{ shape: [5, C] }, {
  shape: [2, 2],
  dtype: "int64",
  values: [0, 2, 2, 4],
}]);
check("Gather", "axis 1", (d, i) => b.gather(d, i, 1), [{ shape: [A, 4, C] }, {
  shape: [3],
  dtype: "int64",
  values: [3, 0, 3],
}]);
check("Trilu", "lower, batched", (x) => b.trilu(x), [{ shape: [A, 4, 4] }]);
check("Trilu", "upper", (x) => b.trilu(x, true), [{ shape: [3, 3] }]);
check("Trilu", "lower, diagonal shifted by 2", (x, k) => b.trilu(x, false, k), [{ shape: [3, 5] }, {
  shape: [],
  dtype: "int64",
  values: [2],
}]);

Deno.test("every differentiable op has a finite-difference check", () => {
  const missing = (Object.keys(VJP) as OpType[]).filter((op) =>
    VJP[op] !== NON_DIFFERENTIABLE && !tested.has(op)
  );
  assert.deepEqual(missing, []);
});

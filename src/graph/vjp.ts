/**
 * Vector-Jacobian product rules, one per op.
 *
 * A rule maps a node and the gradients flowing into its outputs (`dY`, `null` where an output got none) to one
 * gradient per input (`null` where an input is not differentiable). Rules may return a gradient in the
 * broadcast shape of the output: the driver ({@link ./autodiff.ts}) sums it back to the input's shape, so no rule
 * handles broadcasting itself. The table's mapped type makes a missing op a compile error.
 *
 * Legend: x, a, b inputs; y output; d the gradient flowing into y; N rows, C classes.
 *
 * @module
 */

import { type FloatDType, isFloat, wideFloat } from "./dtype.ts";
import {
  add,
  cast,
  concat,
  cos,
  div,
  equal,
  exp,
  expandLike,
  flatten,
  fullLike,
  gather,
  greater,
  less,
  log,
  matmul,
  mul,
  neg,
  not,
  pad,
  pow,
  reduceProd,
  reduceSum,
  reshape,
  scatterND,
  sin,
  split,
  sub,
  transpose,
  transposeLast2,
  trilu,
  unsqueeze,
  where,
} from "./build.ts";
import type { Node, Value } from "./graph.ts";
import type { OpType } from "./ops.ts";
import { productDim } from "./shape.ts";

/** Gradient of each input from the gradients of the outputs. */
export type VjpRule<K extends OpType> = (node: Node<K>, dY: readonly (Value | null)[]) => (Value | null)[];

/** Marks an op through which no gradient flows (comparisons, indices, shapes, or ops used only inside rules). */
export const NON_DIFFERENTIABLE = "non-differentiable";

/** One rule per op, or {@link NON_DIFFERENTIABLE}. */
export type VjpTable = { readonly [K in OpType]: VjpRule<K> | typeof NON_DIFFERENTIABLE };

/** The single upstream gradient of a one-output op (the driver calls a rule only when some output has one). */
const one = (dY: readonly (Value | null)[]): Value => dY[0]!;

/** d broadcast over the reduced axes back to x's shape. */
function unreduce(d: Value, x: Value, axes: number[], keepdims: 0 | 1): Value {
  return expandLike(keepdims ? d : unsqueeze(d, axes), x);
}

/** Number of elements of x over `axes`, as a scalar of x's dtype (read at run time when symbolic). */
function countOver(x: Value, axes: number[]): Value {
  const n = productDim(axes.map((a) => x.shape[a]));
  if (typeof n === "number") return x.graph.scalar(n, x.dtype);
  const g = x.graph;
  const dims = gather(g.shapeTensor(x.shape), g.constant(axes, [axes.length], "int64"));
  return cast(reduceProd(dims, [0]), x.dtype);
}

/** int64 pads [2·rank] that put a slice of x back in place. */
function slicePads(node: Node<"Slice">): Value {
  const [x] = node.inputs;
  const g = x.graph;
  const { starts, ends, axes } = node.attrs;
  const before: Value[] = [], after: Value[] = [];
  const int = (n: number) => g.constant([n], [1], "int64");
  x.shape.forEach((dim, k) => {
    const i = axes.indexOf(k);
    if (i < 0) return before.push(int(0)), after.push(int(0));
    const [s, e] = [starts[i], ends[i]];
    if (typeof dim === "number") {
      const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + dim : v, 0), dim);
      return before.push(int(clamp(s))), after.push(int(dim - Math.max(clamp(e), clamp(s))));
    }
    const size = g.shapeTensor([dim]);
    before.push(s >= 0 ? int(s) : add(size, s));
    after.push(e >= Number.MAX_SAFE_INTEGER ? int(0) : e < 0 ? int(-e) : sub(size, e));
  });
  return concat([...before, ...after], 0);
}

/**
 * Gradient of Gather: scatter-add d into zeros shaped like data, along `axis`. A float16 gradient is summed in
 * float32 and cast back: repeated indices add up many terms, and onnxruntime's CPU ScatterND has no float16 add.
 */
function gatherVjp(node: Node<"Gather">, dY: Value): Value {
  const [data, indices] = node.inputs;
  const wide = wideFloat(data.dtype as FloatDType);
  const d = cast(dY, wide);
  const k = node.attrs.axis < 0 ? node.attrs.axis + data.shape.length : node.attrs.axis;
  const ri = indices.shape.length;
  const idx = unsqueeze(cast(indices, "int64"), [-1]);
  if (k === 0) return cast(scatterND(fullLike(data, 0, wide), idx, d, "add"), data.dtype);
  // Bring the gathered axis (data) and the index axes (d) to the front, scatter, and move back.
  const r = data.shape.length;
  const dataPerm = [k, ...[...Array(r).keys()].filter((i) => i !== k)];
  const dPerm = [...Array(ri).keys()].map((i) => k + i);
  for (let i = 0; i < d.shape.length; i++) if (i < k || i >= k + ri) dPerm.push(i);
  const scattered = scatterND(fullLike(transpose(data, dataPerm), 0, wide), idx, transpose(d, dPerm), "add");
  const inverse = dataPerm.map((_, i) => dataPerm.indexOf(i));
  return cast(transpose(scattered, inverse), data.dtype);
}

/** Classes 0..C-1 equal to each label, as floats: one-hot rows [N, C]. */
function oneHot(labels: Value, like: Value): Value {
  const c = like.shape[1];
  if (typeof c !== "number") throw new Error(`cross-entropy needs a numeric class count, got '${c}'`);
  const classes = like.graph.constant([...Array(c).keys()], [c], "int64");
  return cast(equal(unsqueeze(labels, [1]), classes), like.dtype);
}

/**
 * Softmax cross-entropy, fused: d scores = (softmax − onehot) · weight per row. Going through log-softmax, a
 * gather and a masked mean would build several [N, C] intermediates and lose precision where p ≈ onehot; the
 * fused form is exact and needs only the op's own log-probability output.
 */
function crossEntropyVjp(node: Node<"SoftmaxCrossEntropyLoss">, dY: readonly (Value | null)[]): Value {
  const [scores, labels] = node.inputs;
  const [, logProb] = node.outputs;
  const [dLoss, dLogProb] = dY;
  const p = exp(logProb);
  const parts: Value[] = [];
  if (dLoss) {
    const valid = cast(not(equal(labels, node.attrs.ignore_index)), scores.dtype); // [N]
    let weight: Value; // [N] or scalar·[N]
    if (node.attrs.reduction === "none") weight = mul(valid, dLoss);
    else if (node.attrs.reduction === "sum") weight = mul(valid, dLoss);
    else weight = mul(valid, div(dLoss, reduceSum(valid, [0])));
    parts.push(mul(sub(p, oneHot(labels, scores)), unsqueeze(weight, [1])));
  }
  if (dLogProb) parts.push(sub(dLogProb, mul(p, reduceSum(dLogProb, [1], true))));
  return parts.reduce((acc, v) => add(acc, v));
}

/** Gradient of a ≤ b picks (min) or a ≥ b picks (max); ties go to the first operand. */
function pickVjp(node: Node<"Min" | "Max">, d: Value): Value[] {
  const [a, b] = node.inputs;
  const secondWins = node.op === "Min" ? greater(a, b) : less(a, b);
  return [where(not(secondWins), d, 0), where(secondWins, d, 0)];
}

/** The rules. */
export const VJP: VjpTable = {
  Add: (_, dY) => [one(dY), one(dY)],
  Sub: (_, dY) => [one(dY), neg(one(dY))],
  Mul: ({ inputs: [a, b] }, dY) => [mul(one(dY), b), mul(one(dY), a)],
  Div: ({ inputs: [, b], outputs: [y] }, dY) => [div(one(dY), b), neg(div(mul(one(dY), y), b))],
  Pow: ({ inputs: [x, e], outputs: [y] }, dY) => [
    mul(one(dY), mul(e, pow(x, sub(e, 1)))),
    mul(one(dY), mul(y, log(x))),
  ],
  Min: (node, dY) => pickVjp(node, one(dY)),
  Max: (node, dY) => pickVjp(node, one(dY)),
  Sum: ({ inputs }, dY) => inputs.map(() => one(dY)),
  Where: ({ inputs: [c] }, dY) => [null, where(c, one(dY), 0), where(c, 0, one(dY))],
  Equal: NON_DIFFERENTIABLE,
  Less: NON_DIFFERENTIABLE,
  Greater: NON_DIFFERENTIABLE,
  And: NON_DIFFERENTIABLE,
  Not: NON_DIFFERENTIABLE,
  Neg: (_, dY) => [neg(one(dY))],
  Sqrt: ({ outputs: [y] }, dY) => [div(mul(one(dY), 0.5), y)],
  Reciprocal: ({ outputs: [y] }, dY) => [neg(mul(one(dY), mul(y, y)))],
  Exp: ({ outputs: [y] }, dY) => [mul(one(dY), y)],
  Log: ({ inputs: [x] }, dY) => [div(one(dY), x)],
  Sigmoid: ({ outputs: [y] }, dY) => [mul(one(dY), mul(y, sub(1, y)))],
  Tanh: ({ outputs: [y] }, dY) => [mul(one(dY), sub(1, mul(y, y)))],
  Sin: ({ inputs: [x] }, dY) => [mul(one(dY), cos(x))],
  Cos: ({ inputs: [x] }, dY) => [neg(mul(one(dY), sin(x)))],
  Identity: (_, dY) => [one(dY)],
  Cast: ({ inputs: [x] }, dY) => [isFloat(x.dtype) ? cast(one(dY), x.dtype) : null],
  MatMul: ({ inputs: [a, b] }, dY) => {
    const d = one(dY); // [..., M, N]; a [..., M, K]; b [..., K, N]
    const da = matmul(d, transposeLast2(b));
    // A shared weight [K, N] under batched a: one [K, B·M] @ [B·M, N] product instead of a per-batch one.
    const db = b.shape.length === 2 && a.shape.length > 2
      ? matmul(transpose(flatten(a, 1)), flatten(d, 1))
      : matmul(transposeLast2(a), d);
    return [da, db];
  },
  ReduceSum: ({ inputs: [x], attrs }, dY) => [unreduce(one(dY), x, attrs.axes, attrs.keepdims), null],
  ReduceMean: ({ inputs: [x], attrs }, dY) => [
    div(unreduce(one(dY), x, attrs.axes, attrs.keepdims), countOver(x, attrs.axes)),
    null,
  ],
  // Max is used as a stabiliser (treated as a constant); its gradient is ill-defined at ties.
  ReduceMax: NON_DIFFERENTIABLE,
  ReduceProd: NON_DIFFERENTIABLE,
  ArgMax: NON_DIFFERENTIABLE,
  Softmax: (
    { outputs: [y], attrs },
    dY,
  ) => [mul(y, sub(one(dY), reduceSum(mul(one(dY), y), [attrs.axis], true)))],
  LogSoftmax: (
    { outputs: [y], attrs },
    dY,
  ) => [sub(one(dY), mul(exp(y), reduceSum(one(dY), [attrs.axis], true)))],
  SoftmaxCrossEntropyLoss: (node, dY) => [crossEntropyVjp(node, dY), null],
  Reshape: ({ inputs: [x] }, dY) => [reshape(one(dY), x.shape), null],
  Transpose: ({ attrs }, dY) => [transpose(one(dY), attrs.perm.map((_, i) => attrs.perm.indexOf(i)))],
  Slice: (node, dY) => [pad(one(dY), slicePads(node), node.inputs[0].shape), null, null, null],
  Concat: ({ inputs, attrs }, dY) => {
    const k = attrs.axis < 0 ? attrs.axis + inputs[0].shape.length : attrs.axis;
    return split(one(dY), inputs.map((x) => x.shape[k]), k);
  },
  Split: (
    { outputs, attrs },
    dY,
  ) => [concat(outputs.map((y, j) => dY[j] ?? fullLike(y, 0)), attrs.axis), null],
  Unsqueeze: ({ inputs: [x] }, dY) => [reshape(one(dY), x.shape), null],
  Squeeze: ({ inputs: [x] }, dY) => [reshape(one(dY), x.shape), null],
  Expand: (_, dY) => [one(dY), null],
  Gather: (node, dY) => [gatherVjp(node, one(dY)), null],
  ScatterND: NON_DIFFERENTIABLE,
  // Pad is emitted only by Slice's rule.
  Pad: NON_DIFFERENTIABLE,
  Trilu: ({ inputs: [, k], attrs }, dY) => [trilu(one(dY), attrs.upper === 1, k), null],
  Shape: NON_DIFFERENTIABLE,
  ConstantOfShape: NON_DIFFERENTIABLE,
};

/**
 * Functions that emit ops: what model code and gradient rules are written with.
 *
 * Each takes values of one graph (numbers become scalar constants of the other operand's dtype) and returns the
 * new value. Shapes are inferred at once, so a mistake is reported where it is made, naming the node.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { add, matmul } from "./build.ts";
 * const g = new Graph();
 * const x = g.input("x", g.float, ["B", 4]);
 * const w = g.initializer("w", [4, 2], [1, 0, 0, 1, 1, 1, 0, 0]);
 * const y = add(matmul(x, w), 1);
 * if (y.shape.join() !== "B,2") throw new Error(`unexpected shape ${y.shape}`);
 * ```
 *
 * @module
 */

import type { DType } from "./dtype.ts";
import { apply1, type Graph, graphOf, type Value } from "./graph.ts";
import type { OpAttrs } from "./ops.ts";
import { type Dim, normAxis, productDim, type Shape } from "./shape.ts";

type Operand = Value | number;

function lift(a: Operand, b: Operand): [Value, Value] {
  if (typeof a === "number" && typeof b === "number") {
    throw new TypeError("at least one operand must be a Value");
  }
  const ref = (typeof a === "number" ? b : a) as Value;
  const g = ref.graph;
  return [
    typeof a === "number" ? g.scalar(a, ref.dtype) : a,
    typeof b === "number" ? g.scalar(b, ref.dtype) : b,
  ];
}

const binary =
  (op: "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Min" | "Max") => (a: Operand, b: Operand): Value => {
    const [x, y] = lift(a, b);
    return apply1(graphOf(x, y), op, [x, y], {});
  };
const unary = (
  op:
    | "Neg"
    | "Sqrt"
    | "Reciprocal"
    | "Exp"
    | "Log"
    | "Sigmoid"
    | "Tanh"
    | "Sin"
    | "Cos"
    | "Not"
    | "Identity",
) =>
(x: Value): Value => apply1(x.graph, op, [x], {});
const comparison = (op: "Equal" | "Less" | "Greater") => (a: Operand, b: Operand): Value => {
  const [x, y] = lift(a, b);
  return apply1(graphOf(x, y), op, [x, y], {});
};

/** a + b (broadcasting). */
export const add: (a: Operand, b: Operand) => Value = binary("Add");
/** a - b. */
export const sub: (a: Operand, b: Operand) => Value = binary("Sub");
/** a * b. */
export const mul: (a: Operand, b: Operand) => Value = binary("Mul");
/** a / b. */
export const div: (a: Operand, b: Operand) => Value = binary("Div");
/** a ** b. */
export const pow: (a: Operand, b: Operand) => Value = binary("Pow");
/** Elementwise minimum. */
export const minimum: (a: Operand, b: Operand) => Value = binary("Min");
/** Elementwise maximum. */
export const maximum: (a: Operand, b: Operand) => Value = binary("Max");
/** -x. */
export const neg: (x: Value) => Value = unary("Neg");
/** √x. */
export const sqrt: (x: Value) => Value = unary("Sqrt");
/** 1/x. */
export const reciprocal: (x: Value) => Value = unary("Reciprocal");
/** eˣ. */
export const exp: (x: Value) => Value = unary("Exp");
/** ln x. */
export const log: (x: Value) => Value = unary("Log");
/** 1/(1+e⁻ˣ). */
export const sigmoid: (x: Value) => Value = unary("Sigmoid");
/** tanh x. */
export const tanh: (x: Value) => Value = unary("Tanh");
/** sin x. */
export const sin: (x: Value) => Value = unary("Sin");
/** cos x. */
export const cos: (x: Value) => Value = unary("Cos");
/** Logical not of a bool value. */
export const not: (x: Value) => Value = unary("Not");
/** A copy of x (used to give a value another name). */
export const identity: (x: Value) => Value = unary("Identity");
/** a == b → bool. */
export const equal: (a: Operand, b: Operand) => Value = comparison("Equal");
/** a < b → bool. */
export const less: (a: Operand, b: Operand) => Value = comparison("Less");
/** a > b → bool. */
export const greater: (a: Operand, b: Operand) => Value = comparison("Greater");

/** Logical and of two bool values. */
export function and(a: Value, b: Value): Value {
  return apply1(graphOf(a, b), "And", [a, b], {});
}

/** Sum of several values (broadcasting). */
export function sum(...xs: Value[]): Value {
  return xs.length === 1 ? xs[0] : apply1(graphOf(...xs), "Sum", xs, {});
}

/** cond ? x : y, elementwise with broadcasting. */
export function where(cond: Value, x: Operand, y: Operand): Value {
  const [a, b] = lift(x, y);
  return apply1(graphOf(cond, a, b), "Where", [cond, a, b], {});
}

/** Converts x to `to`. */
export function cast(x: Value, to: DType): Value {
  return x.dtype === to ? x : apply1(x.graph, "Cast", [x], { to });
}

/** Matrix product over the last two axes, batch axes broadcasting. */
export function matmul(a: Value, b: Value): Value {
  return apply1(graphOf(a, b), "MatMul", [a, b], {});
}

type ReduceOp = "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceProd";
const reduction = (op: ReduceOp) => (x: Value, axes: number[], keepdims = false): Value => {
  const g = x.graph;
  const attrs: OpAttrs[ReduceOp] = {
    axes: axes.map((a) => normAxis(a, x.shape.length)),
    keepdims: keepdims ? 1 : 0,
  };
  return apply1(g, op, [x, g.constant(attrs.axes, [axes.length], "int64")], attrs);
};
/** Sum over `axes`. */
export const reduceSum: (x: Value, axes: number[], keepdims?: boolean) => Value = reduction("ReduceSum");
/** Mean over `axes`. */
export const reduceMean: (x: Value, axes: number[], keepdims?: boolean) => Value = reduction("ReduceMean");
/** Maximum over `axes`. */
export const reduceMax: (x: Value, axes: number[], keepdims?: boolean) => Value = reduction("ReduceMax");
/** Product over `axes`. */
export const reduceProd: (x: Value, axes: number[], keepdims?: boolean) => Value = reduction("ReduceProd");

/** Index of the maximum along `axis` (int64). */
export function argMax(x: Value, axis: number, keepdims = false): Value {
  return apply1(x.graph, "ArgMax", [x], { axis, keepdims: keepdims ? 1 : 0 });
}

/** Softmax along `axis` (default last). */
export function softmax(x: Value, axis = -1): Value {
  return apply1(x.graph, "Softmax", [x], { axis });
}

/** Log-softmax along `axis` (default last). */
export function logSoftmax(x: Value, axis = -1): Value {
  return apply1(x.graph, "LogSoftmax", [x], { axis });
}

/** Options of {@link softmaxCrossEntropy}. */
export interface CrossEntropyOptions {
  /** Label value that contributes no loss (default -100, as PyTorch and Hugging Face). */
  ignoreIndex?: number;
  /** "mean" over non-ignored labels (default), "sum", or "none" for per-row losses. */
  reduction?: "mean" | "sum" | "none";
}

/** Cross-entropy of scores [N, C] against int64 labels [N]; also returns the log-probabilities [N, C]. */
export function softmaxCrossEntropy(
  scores: Value,
  labels: Value,
  options: CrossEntropyOptions = {},
): { loss: Value; logProb: Value } {
  const [loss, logProb] = graphOf(scores, labels).apply("SoftmaxCrossEntropyLoss", [scores, labels], {
    ignore_index: options.ignoreIndex ?? -100,
    reduction: options.reduction ?? "mean",
  });
  return { loss, logProb };
}

/** Reshapes x to `shape`; symbolic dims (including products like `"B*T"`) are resolved at run time. */
export function reshape(x: Value, shape: Shape): Value {
  const g = x.graph;
  return apply1(g, "Reshape", [x, g.shapeTensor(shape)], { shape: [...shape] });
}

/** Merges all axes but the last `keep` into one: [B, T, D] → [B*T, D]. */
export function flatten(x: Value, keep = 1): Value {
  const lead = x.shape.slice(0, x.shape.length - keep);
  return reshape(x, [productDim(lead), ...x.shape.slice(x.shape.length - keep)]);
}

/** Permutes axes; the default reverses them. */
export function transpose(x: Value, perm?: number[]): Value {
  return apply1(x.graph, "Transpose", [x], { perm: perm ?? x.shape.map((_, i) => x.shape.length - 1 - i) });
}

/** Swaps the last two axes. */
export function transposeLast2(x: Value): Value {
  const r = x.shape.length;
  return transpose(x, [...Array(r - 2).keys(), r - 1, r - 2]);
}

/** x[start:end] along each of `axes` (step 1; negative indices count from the end; use Infinity for "to the end"). */
export function slice(x: Value, starts: number[], ends: number[], axes: number[]): Value {
  const g = x.graph;
  const big = Number.MAX_SAFE_INTEGER;
  const attrs = {
    starts,
    ends: ends.map((e) => (e === Infinity ? big : e)),
    axes: axes.map((a) => normAxis(a, x.shape.length)),
  };
  const t = (v: number[]) => g.constant(v, [v.length], "int64");
  return apply1(g, "Slice", [x, t(attrs.starts), t(attrs.ends), t(attrs.axes)], attrs);
}

/** Joins values along `axis`. */
export function concat(xs: Value[], axis: number): Value {
  return xs.length === 1 ? xs[0] : apply1(graphOf(...xs), "Concat", xs, { axis });
}

/** Splits x along `axis` into parts of the given sizes. */
export function split(x: Value, sizes: Dim[], axis: number): Value[] {
  const g = x.graph;
  return g.apply("Split", [x, g.shapeTensor(sizes)], { axis: normAxis(axis, x.shape.length), sizes });
}

/** Inserts size-1 axes at `axes` (positions in the output). */
export function unsqueeze(x: Value, axes: number[]): Value {
  const g = x.graph;
  return apply1(g, "Unsqueeze", [x, g.constant(axes, [axes.length], "int64")], { axes });
}

/** Removes the size-1 axes `axes`. */
export function squeeze(x: Value, axes: number[]): Value {
  const g = x.graph;
  return apply1(g, "Squeeze", [x, g.constant(axes, [axes.length], "int64")], { axes });
}

/** Broadcasts x to `shape`. */
export function expand(x: Value, shape: Shape): Value {
  const g = x.graph;
  return apply1(g, "Expand", [x, g.shapeTensor(shape)], { shape: [...shape] });
}

/** Broadcasts x to the run-time shape of `like` (its static shape too). */
export function expandLike(x: Value, like: Value): Value {
  return apply1(graphOf(x, like), "Expand", [x, shapeOf(like)], { shape: [...like.shape] });
}

/** Rows of `data` picked by int64 `indices` along `axis` (default 0). */
export function gather(data: Value, indices: Value, axis = 0): Value {
  return apply1(graphOf(data, indices), "Gather", [data, indices], { axis });
}

/** data with `updates` written (or added) at int64 `indices` [..., k]. */
export function scatterND(
  data: Value,
  indices: Value,
  updates: Value,
  reduction: "none" | "add" = "none",
): Value {
  return apply1(graphOf(data, indices, updates), "ScatterND", [data, indices, updates], { reduction });
}

/** Zero-pads x by the run-time int64 `pads` [2·rank] (ONNX layout: all befores, then all afters) to `shape`. */
export function pad(x: Value, pads: Value, shape: Shape): Value {
  return apply1(graphOf(x, pads), "Pad", [x, pads], { shape: [...shape] });
}

/** Lower (default) or upper triangle of the last two axes, shifted by the int64 scalar diagonal `k` if given. */
export function trilu(x: Value, upper = false, k?: Value): Value {
  return apply1(x.graph, "Trilu", k ? [x, k] : [x], { upper: upper ? 1 : 0 });
}

/** The run-time shape of x as a 1-D int64 tensor. */
export function shapeOf(x: Value): Value {
  return apply1(x.graph, "Shape", [x], {});
}

/**
 * A copy of `x` made once `after` is computed (a Gather of x at an index 0 read from after's run-time shape):
 * what orders the cast of a 16-bit frozen weight right before its use, so that one layer's float32 weights are
 * live at a time, and keeps onnxruntime's common-subexpression elimination from merging copies made for
 * different uses.
 */
export function copyAfter(x: Value, after: Value): Value {
  graphOf(x, after);
  return gather(unsqueeze(x, [0]), zeroAfter(after));
}

/**
 * Rows [start, end) of `x` (axis 0), sliced once `after` is computed: {@link copyAfter} for a part of x (the
 * slice's start is read as start + 0, the 0 from after's run-time shape). The LM head casts a 16-bit weight one
 * vocabulary slice at a time with it, each slice right before its product (`src/model/lm_head.ts`).
 */
export function rowsAfter(x: Value, start: number, end: number, after: Value): Value {
  const g = graphOf(x, after);
  const t = (v: number) => g.constant([v], [1], "int64");
  const starts = add(t(start), zeroAfter(after)); // [1]
  return apply1(g, "Slice", [x, starts, t(end), t(0)], { starts: [start], ends: [end], axes: [0] });
}

/** An int64 scalar 0 read from `after`'s run-time shape: what makes a value computed from it wait for `after`. */
function zeroAfter(after: Value): Value {
  const dims = shapeOf(after.shape.length ? after : unsqueeze(after, [0])); // [rank] int64
  return mul(gather(dims, after.graph.constant([0], [], "int64")), 0);
}

/** A tensor of `value` with the run-time shape of `like` (its dtype by default). */
export function fullLike(like: Value, value: number, dtype: DType = like.dtype): Value {
  return apply1(like.graph, "ConstantOfShape", [shapeOf(like)], { shape: [...like.shape], value, dtype });
}

/** A tensor of `value` with `shape` (symbols resolved at run time). */
export function full(g: Graph, shape: Shape, value: number, dtype: DType = g.float): Value {
  return apply1(g, "ConstantOfShape", [g.shapeTensor(shape)], { shape: [...shape], value, dtype });
}

/**
 * The closed set of ONNX operators the graph builder may emit (default domain, opset {@link OPSET}).
 *
 * Each op has typed attributes and one entry in {@link OP_DEFS}: its shape and dtype inference, and which of its
 * attributes are ONNX attributes. The other attribute fields are static facts the builder knows and ONNX reads
 * from constant inputs instead (Reshape's target shape, Slice's bounds, reduction axes, …); they let inference and
 * the gradient rules work without evaluating tensors.
 *
 * @module
 */

import { type DType, isFloat } from "./dtype.ts";
import {
  broadcastShapes,
  type Dim,
  formatShape,
  normAxis,
  sameCount,
  type Shape,
  ShapeError,
} from "./shape.ts";

/** The ONNX opset version the builder targets. */
export const OPSET = 21;

type NoAttrs = Record<never, never>;

/** Attributes of every op in the closed set. */
export interface OpAttrs {
  // Elementwise, broadcasting.
  Add: NoAttrs;
  Sub: NoAttrs;
  Mul: NoAttrs;
  Div: NoAttrs;
  Pow: NoAttrs;
  Min: NoAttrs;
  Max: NoAttrs;
  Sum: NoAttrs;
  Where: NoAttrs;
  Equal: NoAttrs;
  Less: NoAttrs;
  Greater: NoAttrs;
  And: NoAttrs;
  // Elementwise, unary.
  Neg: NoAttrs;
  Sqrt: NoAttrs;
  Reciprocal: NoAttrs;
  Exp: NoAttrs;
  Log: NoAttrs;
  Sigmoid: NoAttrs;
  Tanh: NoAttrs;
  Sin: NoAttrs;
  Cos: NoAttrs;
  Not: NoAttrs;
  Identity: NoAttrs;
  Cast: { to: DType };
  // Linear algebra and reductions.
  MatMul: NoAttrs;
  ReduceSum: { axes: number[]; keepdims: 0 | 1 };
  ReduceMean: { axes: number[]; keepdims: 0 | 1 };
  ReduceMax: { axes: number[]; keepdims: 0 | 1 };
  ReduceProd: { axes: number[]; keepdims: 0 | 1 };
  ArgMax: { axis: number; keepdims: 0 | 1 };
  Softmax: { axis: number };
  LogSoftmax: { axis: number };
  /** scores [N, C], labels [N] → loss (reduced as `reduction`) and log-probabilities [N, C]. */
  SoftmaxCrossEntropyLoss: { ignore_index: number; reduction: "mean" | "sum" | "none" };
  // Layout.
  Reshape: { shape: Shape };
  Transpose: { perm: number[] };
  Slice: { starts: number[]; ends: number[]; axes: number[] };
  Concat: { axis: number };
  Split: { axis: number; sizes: Dim[] };
  Unsqueeze: { axes: number[] };
  Squeeze: { axes: number[] };
  Expand: { shape: Shape };
  Gather: { axis: number };
  ScatterND: { reduction: "none" | "add" };
  /** Zero padding by run-time `pads`; `shape` is the static output shape. */
  Pad: { shape: Shape };
  Trilu: { upper: 0 | 1 };
  Shape: NoAttrs;
  ConstantOfShape: { shape: Shape; value: number; dtype: DType };
}

/** Every op the builder may emit. */
export type OpType = keyof OpAttrs;

/** The static description of a value: what inference works on. */
export interface ValueInfo {
  readonly dtype: DType;
  readonly shape: Shape;
}

/** How one op is inferred and serialized. */
export interface OpDef<K extends OpType> {
  /** Output dtypes and shapes from the inputs' (throws {@link ShapeError}). */
  infer(inputs: readonly ValueInfo[], attrs: OpAttrs[K]): ValueInfo[];
  /** The attribute keys that are ONNX attributes; the others are static facts for the builder. */
  onnxAttrs: readonly (keyof OpAttrs[K])[];
}

function sameDType(inputs: readonly ValueInfo[], want?: (d: DType) => boolean, what = "a float"): DType {
  const d = inputs[0].dtype;
  for (const v of inputs) {
    if (v.dtype !== d) throw new ShapeError(`inputs must share one dtype, got ${inputs.map((i) => i.dtype)}`);
  }
  if (want && !want(d)) throw new ShapeError(`expected ${what} dtype, got ${d}`);
  return d;
}

const broadcast = (want?: (d: DType) => boolean) => (ins: readonly ValueInfo[]): ValueInfo[] => [
  { dtype: sameDType(ins, want), shape: broadcastShapes(...ins.map((i) => i.shape)) },
];
const compare = (ins: readonly ValueInfo[]): ValueInfo[] => {
  sameDType(ins);
  return [{ dtype: "bool", shape: broadcastShapes(...ins.map((i) => i.shape)) }];
};
const unary = (want?: (d: DType) => boolean) => (ins: readonly ValueInfo[]): ValueInfo[] => [
  { dtype: sameDType(ins, want), shape: ins[0].shape },
];
const isBool = (d: DType) => d === "bool";
const isNumeric = (d: DType) => d !== "bool";

function reduceShape(shape: Shape, axes: number[], keepdims: 0 | 1): Dim[] {
  const set = new Set(axes.map((a) => normAxis(a, shape.length)));
  const out: Dim[] = [];
  shape.forEach((d, i) => {
    if (!set.has(i)) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}
const reduce =
  (want?: (d: DType) => boolean) =>
  (ins: readonly ValueInfo[], a: { axes: number[]; keepdims: 0 | 1 }): ValueInfo[] => [
    { dtype: sameDType(ins.slice(0, 1), want), shape: reduceShape(ins[0].shape, a.axes, a.keepdims) },
  ];

function sliceDim(dim: Dim, start: number, end: number): Dim {
  if (typeof dim === "number") {
    const s = Math.min(Math.max(start < 0 ? start + dim : start, 0), dim);
    const e = Math.min(Math.max(end < 0 ? end + dim : end, 0), dim);
    return Math.max(e - s, 0);
  }
  if (start >= 0 && end >= 0 && end < Number.MAX_SAFE_INTEGER) return end - start;
  // The last -start entries; assumes the axis holds at least that many at run time.
  if (start < 0 && end >= Number.MAX_SAFE_INTEGER) return -start;
  return `${dim}[${start}:${end >= Number.MAX_SAFE_INTEGER ? "" : end}]`;
}

function insertAxes(shape: Shape, axes: number[]): Dim[] {
  const rank = shape.length + axes.length;
  const set = new Set(axes.map((a) => normAxis(a, rank)));
  const out: Dim[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : shape[j++]);
  return out;
}

/** Inference and serialization for every op; the mapped type makes a missing op a compile error. */
export const OP_DEFS: { readonly [K in OpType]: OpDef<K> } = {
  Add: { infer: broadcast(isNumeric), onnxAttrs: [] },
  Sub: { infer: broadcast(isNumeric), onnxAttrs: [] },
  Mul: { infer: broadcast(isNumeric), onnxAttrs: [] },
  Div: { infer: broadcast(isNumeric), onnxAttrs: [] },
  Pow: { infer: broadcast(isFloat), onnxAttrs: [] },
  Min: { infer: broadcast(), onnxAttrs: [] },
  Max: { infer: broadcast(), onnxAttrs: [] },
  Sum: { infer: broadcast(isFloat), onnxAttrs: [] },
  Where: {
    infer: ([c, x, y]) => {
      if (c.dtype !== "bool") throw new ShapeError(`condition must be bool, got ${c.dtype}`);
      return [{ dtype: sameDType([x, y]), shape: broadcastShapes(c.shape, x.shape, y.shape) }];
    },
    onnxAttrs: [],
  },
  Equal: { infer: compare, onnxAttrs: [] },
  Less: { infer: compare, onnxAttrs: [] },
  Greater: { infer: compare, onnxAttrs: [] },
  And: { infer: broadcast(isBool), onnxAttrs: [] },
  Neg: { infer: unary(isFloat), onnxAttrs: [] },
  Sqrt: { infer: unary(isFloat), onnxAttrs: [] },
  Reciprocal: { infer: unary(isFloat), onnxAttrs: [] },
  Exp: { infer: unary(isFloat), onnxAttrs: [] },
  Log: { infer: unary(isFloat), onnxAttrs: [] },
  Sigmoid: { infer: unary(isFloat), onnxAttrs: [] },
  Tanh: { infer: unary(isFloat), onnxAttrs: [] },
  Sin: { infer: unary(isFloat), onnxAttrs: [] },
  Cos: { infer: unary(isFloat), onnxAttrs: [] },
  Not: { infer: unary(isBool), onnxAttrs: [] },
  Identity: { infer: unary(), onnxAttrs: [] },
  Cast: { infer: ([x], a) => [{ dtype: a.to, shape: x.shape }], onnxAttrs: ["to"] },
  MatMul: {
    infer: (ins) => {
      const dtype = sameDType(ins, isFloat);
      const [a, b] = ins.map((i) => i.shape);
      if (a.length < 2 || b.length < 2) {
        throw new ShapeError(`MatMul needs rank >= 2 operands, got ${formatShape(a)} and ${formatShape(b)}`);
      }
      const k1 = a[a.length - 1], k2 = b[b.length - 2];
      if (k1 !== k2) {
        throw new ShapeError(`inner dims differ: ${formatShape(a)} @ ${formatShape(b)} (${k1} vs ${k2})`);
      }
      const batch = broadcastShapes(a.slice(0, -2), b.slice(0, -2));
      return [{ dtype, shape: [...batch, a[a.length - 2], b[b.length - 1]] }];
    },
    onnxAttrs: [],
  },
  ReduceSum: { infer: reduce(isFloat), onnxAttrs: ["keepdims"] },
  ReduceMean: { infer: reduce(isFloat), onnxAttrs: ["keepdims"] },
  ReduceMax: { infer: reduce(), onnxAttrs: ["keepdims"] },
  ReduceProd: { infer: reduce(), onnxAttrs: ["keepdims"] },
  ArgMax: {
    infer: ([x], a) => [{ dtype: "int64", shape: reduceShape(x.shape, [a.axis], a.keepdims) }],
    onnxAttrs: ["axis", "keepdims"],
  },
  Softmax: {
    infer: (ins, a) => (normAxis(a.axis, ins[0].shape.length), unary(isFloat)(ins)),
    onnxAttrs: ["axis"],
  },
  LogSoftmax: {
    infer: (ins, a) => (normAxis(a.axis, ins[0].shape.length), unary(isFloat)(ins)),
    onnxAttrs: ["axis"],
  },
  SoftmaxCrossEntropyLoss: {
    infer: ([s, l], a) => {
      const dtype = sameDType([s], isFloat);
      if (s.shape.length !== 2 || l.shape.length !== 1 || s.shape[0] !== l.shape[0]) {
        throw new ShapeError(
          `expected scores [N,C] and labels [N], got ${formatShape(s.shape)} and ${formatShape(l.shape)}`,
        );
      }
      if (l.dtype !== "int64") throw new ShapeError(`labels must be int64, got ${l.dtype}`);
      return [{ dtype, shape: a.reduction === "none" ? l.shape : [] }, { dtype, shape: s.shape }];
    },
    onnxAttrs: ["ignore_index", "reduction"],
  },
  Reshape: {
    infer: ([x], a) => {
      if (!sameCount(x.shape, a.shape)) {
        throw new ShapeError(`cannot reshape ${formatShape(x.shape)} to ${formatShape(a.shape)}`);
      }
      return [{ dtype: x.dtype, shape: a.shape }];
    },
    onnxAttrs: [],
  },
  Transpose: {
    infer: ([x], a) => {
      const r = x.shape.length;
      if (a.perm.length !== r || [...a.perm].sort().some((p, i) => p !== i)) {
        throw new ShapeError(`perm [${a.perm}] is not a permutation of rank ${r}`);
      }
      return [{ dtype: x.dtype, shape: a.perm.map((p) => x.shape[p]) }];
    },
    onnxAttrs: ["perm"],
  },
  Slice: {
    infer: ([x], a) => {
      const shape = [...x.shape];
      a.axes.forEach((ax, i) => {
        const k = normAxis(ax, shape.length);
        shape[k] = sliceDim(shape[k], a.starts[i], a.ends[i]);
      });
      return [{ dtype: x.dtype, shape }];
    },
    onnxAttrs: [],
  },
  Concat: {
    infer: (ins, a) => {
      const dtype = sameDType(ins);
      const r = ins[0].shape.length, k = normAxis(a.axis, r);
      const shape = [...ins[0].shape];
      for (const v of ins.slice(1)) {
        if (v.shape.length !== r || v.shape.some((d, i) => i !== k && d !== shape[i])) {
          throw new ShapeError(
            `cannot concat ${ins.map((i) => formatShape(i.shape)).join(", ")} on axis ${a.axis}`,
          );
        }
      }
      const parts = ins.map((v) => v.shape[k]);
      shape[k] = parts.every((p) => typeof p === "number")
        ? (parts as number[]).reduce((s, p) => s + p, 0)
        : parts.join("+");
      return [{ dtype, shape }];
    },
    onnxAttrs: ["axis"],
  },
  Split: {
    infer: ([x], a) => {
      const k = normAxis(a.axis, x.shape.length);
      const total = x.shape[k];
      if (typeof total === "number" && a.sizes.every((s) => typeof s === "number")) {
        const sum = (a.sizes as number[]).reduce((s, p) => s + p, 0);
        if (sum !== total) throw new ShapeError(`split sizes [${a.sizes}] do not add up to ${total}`);
      }
      return a.sizes.map((s) => ({ dtype: x.dtype, shape: x.shape.map((d, i) => (i === k ? s : d)) }));
    },
    onnxAttrs: ["axis"],
  },
  Unsqueeze: { infer: ([x], a) => [{ dtype: x.dtype, shape: insertAxes(x.shape, a.axes) }], onnxAttrs: [] },
  Squeeze: {
    infer: ([x], a) => {
      const set = new Set(a.axes.map((ax) => normAxis(ax, x.shape.length)));
      for (const k of set) {
        if (x.shape[k] !== 1) throw new ShapeError(`cannot squeeze axis ${k} of ${formatShape(x.shape)}`);
      }
      return [{ dtype: x.dtype, shape: x.shape.filter((_, i) => !set.has(i)) }];
    },
    onnxAttrs: [],
  },
  Expand: {
    infer: ([x], a) => [{ dtype: x.dtype, shape: broadcastShapes(x.shape, a.shape) }],
    onnxAttrs: [],
  },
  Gather: {
    infer: ([x, idx], a) => {
      if (idx.dtype !== "int64" && idx.dtype !== "int32") {
        throw new ShapeError(`indices must be int64 or int32, got ${idx.dtype}`);
      }
      const k = normAxis(a.axis, x.shape.length);
      return [{ dtype: x.dtype, shape: [...x.shape.slice(0, k), ...idx.shape, ...x.shape.slice(k + 1)] }];
    },
    onnxAttrs: ["axis"],
  },
  ScatterND: {
    infer: ([x, idx, upd]) => {
      if (idx.dtype !== "int64") throw new ShapeError(`indices must be int64, got ${idx.dtype}`);
      sameDType([x, upd]);
      return [{ dtype: x.dtype, shape: x.shape }];
    },
    onnxAttrs: ["reduction"],
  },
  Pad: {
    infer: ([x], a) => {
      if (a.shape.length !== x.shape.length) {
        throw new ShapeError(`cannot pad ${formatShape(x.shape)} to ${formatShape(a.shape)}`);
      }
      return [{ dtype: x.dtype, shape: a.shape }];
    },
    onnxAttrs: [],
  },
  Trilu: {
    infer: ([x, k]) => {
      if (k && (k.dtype !== "int64" || k.shape.length !== 0)) {
        throw new ShapeError(`k must be an int64 scalar`);
      }
      return [{ dtype: x.dtype, shape: x.shape }];
    },
    onnxAttrs: ["upper"],
  },
  Shape: { infer: ([x]) => [{ dtype: "int64", shape: [x.shape.length] }], onnxAttrs: [] },
  ConstantOfShape: { infer: (_, a) => [{ dtype: a.dtype, shape: a.shape }], onnxAttrs: ["value"] },
};

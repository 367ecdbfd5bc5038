/**
 * Reverse-mode differentiation of a built graph.
 *
 * The driver visits only nodes that lie on a path from a requested value to the loss: values that do not depend
 * on any requested value (frozen weights, and everything computed only from them) get no gradient, so no
 * backward is built below the lowest trainable value. It sums fan-out, and it is the one place where broadcasting
 * is undone: a rule may return a gradient in the output's broadcast shape and the driver sums it back.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { matmul, mul, reduceSum } from "./build.ts";
 * import { gradients } from "./autodiff.ts";
 * const g = new Graph();
 * const x = g.input("x", g.float, [2, 3]);
 * const w = g.input("w", g.float, [3, 1]);
 * const loss = reduceSum(mul(matmul(x, w), 2), [0, 1]);
 * const [dW] = gradients(loss, [w]);
 * if (dW.shape.join() !== "3,1") throw new Error(`unexpected ${dW.shape}`);
 * ```
 *
 * @module
 */

import { add, cast, copyAfter, fullLike, mul, reduceMax, reduceSum, reshape, sum } from "./build.ts";
import { describe, type Graph, GraphError, graphOf, type Node, type Segment, type Value } from "./graph.ts";
import { isFloat } from "./dtype.ts";
import type { OpType } from "./ops.ts";
import { formatShape, sameShape } from "./shape.ts";
import { NON_DIFFERENTIABLE, VJP, type VjpRule } from "./vjp.ts";

/** Options of {@link gradients}. */
export interface GradientOptions {
  /** Gradient flowing into `loss` (default: ones shaped like it). */
  seed?: Value;
  /** Return zeros for a requested value the loss does not depend on, instead of throwing. */
  allowUnused?: boolean;
  /**
   * Values treated as constants: no gradient flows through them (a stop-gradient). A constant may still be
   * requested in `wrt`: its gradient is returned, and not passed on to what computed it.
   */
  constants?: readonly Value[];
}

/** Sums a gradient in a broadcast shape back to `target`'s shape. */
export function unbroadcast(d: Value, target: Value): Value {
  if (sameShape(d.shape, target.shape)) return d;
  const lead = d.shape.length - target.shape.length;
  const axes: number[] = [];
  d.shape.forEach((dim, i) => {
    if (i < lead || (target.shape[i - lead] === 1 && dim !== 1)) axes.push(i);
  });
  const reduced = axes.length ? reduceSum(d, axes, true) : d;
  return sameShape(reduced.shape, target.shape) ? reduced : reshape(reduced, target.shape);
}

/** Values that depend on any of `sources` other than through `constants`, in float dtypes. */
function dependents(g: Graph, sources: readonly Value[], constants: ReadonlySet<Value>): Set<Value> {
  const set = new Set(sources);
  for (const node of g.nodes) {
    if (!node.inputs.some((v) => set.has(v))) continue;
    for (const y of node.outputs) if (isFloat(y.dtype) && !constants.has(y)) set.add(y);
  }
  return set;
}

/** Nodes from which `loss` can be reached other than through `constants`, in graph order. */
function ancestors(g: Graph, loss: Value, live: Set<Value>, constants: ReadonlySet<Value>): Node[] {
  const needed = new Set([loss]);
  const out: Node[] = [];
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const node = g.nodes[i];
    // A constant passes no gradient back to what computed it, even when it is itself requested.
    if (!node.outputs.some((y) => needed.has(y) && !constants.has(y))) continue;
    if (!node.inputs.some((v) => live.has(v))) continue;
    out.push(node);
    for (const v of node.inputs) needed.add(v);
  }
  return out.reverse();
}

/** A scalar 0 computed from `dY`: what makes a copy wait for the backward to reach it (see {@link rebuild}). */
function zeroOf(dY: Value): Value {
  return mul(dY.shape.length ? reduceMax(dY, dY.shape.map((_, i) => i)) : dY, 0);
}

/** True for an initializer stored in a 16-bit float type (a frozen weight that graphs cast before use). */
function isNarrowWeight(v: Value): boolean {
  return v.init !== undefined && (v.dtype === "bfloat16" || v.dtype === "float16");
}

/** The 16-bit initializer `v` is, or is a {@link copyAfter} of; else undefined. */
function narrowSource(v: Value): Value | undefined {
  if (isNarrowWeight(v)) return v;
  const p = v.producer;
  const source = p?.op === "Gather" ? p.inputs[0].producer : undefined;
  return source?.op === "Unsqueeze" && isNarrowWeight(source.inputs[0]) ? source.inputs[0] : undefined;
}

/** The ops a frozen weight passes through between its initializer and the ops that use it. */
const WEIGHT_VIEWS: ReadonlySet<OpType> = new Set(["Cast", "Transpose", "Reshape", "Unsqueeze", "Squeeze"]);

/**
 * The 16-bit initializer `v` is made from and the nodes from it to `v`, when `v` is that weight (or a
 * {@link copyAfter} of it) widened by a `Cast` and maybe transposed or reshaped; else null.
 */
function widenedWeight(v: Value): { weight: Value; chain: Node[] } | null {
  const chain: Node[] = [];
  let x = v;
  for (; !narrowSource(x); x = x.producer!.inputs[0]) {
    if (!x.producer || !WEIGHT_VIEWS.has(x.producer.op) || x.producer.inputs.length !== 1) return null;
    chain.unshift(x.producer);
  }
  return chain.some((n) => n.op === "Cast") ? { weight: narrowSource(x)!, chain } : null;
}

/**
 * `node` as its rule should read it: each input that is a 16-bit weight's widened copy replaced by one made
 * after the backward reaches the node ({@link copyAfter} its gradient); the node itself otherwise. Were the
 * backward to read the forward's cast, every trained layer's float32 weights would stay live from the forward
 * to the backward: as much memory as storing them in float32.
 */
function withLateWeights(g: Graph, node: Node, dY: readonly (Value | null)[]): Node {
  const chains = node.inputs.map(widenedWeight);
  if (chains.every((c) => c === null)) return node;
  const d = dY.find((d) => d !== null)!;
  const inputs = node.inputs.map((x, i) => {
    const found = chains[i];
    if (!found) return x;
    let v = copyAfter(found.weight, d);
    for (const n of found.chain) v = g.apply(n.op, [v], n.attrs)[0];
    return v;
  });
  return { ...node, inputs };
}

/**
 * Rebuilds a checkpointed segment's forward for its backward: a copy of each of its nodes, on copies of its
 * inputs, so that the backward reads the copies and the forward's own values die after the forward. `dY`, a
 * gradient reaching the segment, enters every copied input as an added zero (max(dY)·0): that orders the
 * rebuild after the backward reaches the segment, and keeps onnxruntime's common-subexpression elimination
 * from merging the copies back into the forward. A 16-bit weight enters as a {@link copyAfter} dY, for the
 * same reasons. Returns, per node of the segment, its copy.
 */
function rebuild(g: Graph, segment: Segment, dY: Value): Map<Node, Node> {
  const copies = new Map<Node, Node>();
  const values = new Map<Value, Value>();
  const zero = zeroOf(dY);
  const inside = new Set(g.nodes.slice(segment.start, segment.end));
  const entry = (v: Value): Value => {
    let e = values.get(v);
    if (e) return e;
    if (isNarrowWeight(v)) e = copyAfter(v, dY);
    else if (!v.producer || !isFloat(v.dtype) || inside.has(v.producer)) return v;
    else e = add(v, cast(zero, v.dtype));
    values.set(v, e);
    return e;
  };
  for (const node of inside) {
    const outputs = g.apply(node.op, node.inputs.map(entry), node.attrs);
    node.outputs.forEach((y, j) => values.set(y, outputs[j]));
    copies.set(node, outputs[0].producer!);
  }
  return copies;
}

/**
 * Builds the gradients of `loss` with respect to each of `wrt`, appending the backward nodes to the graph.
 * Throws when the loss does not depend on a requested value (unless `allowUnused`). In a graph built with
 * `recompute`, each checkpointed segment's rules read a copy of its forward, rebuilt in the backward
 * (see {@link rebuild}). Rules never read a 16-bit weight's forward cast: they get their own, made from a
 * {@link copyAfter} the gradient reaching the node (see {@link withLateWeights}).
 */
export function gradients(loss: Value, wrt: readonly Value[], options: GradientOptions = {}): Value[] {
  const g = graphOf(loss, ...wrt);
  for (const w of wrt) {
    if (!isFloat(w.dtype)) {
      throw new GraphError(`cannot differentiate with respect to ${describe(w)}: not a float`);
    }
  }
  const constants = new Set(options.constants);
  const live = dependents(g, wrt, constants);
  const grads = new Map<Value, Value[]>();
  const push = (v: Value, d: Value) => grads.set(v, [...(grads.get(v) ?? []), d]);
  const total = (v: Value): Value | null => {
    const parts = grads.get(v);
    return parts ? sum(...parts) : null;
  };
  push(loss, options.seed ?? (loss.shape.length === 0 ? g.scalar(1, loss.dtype) : fullLike(loss, 1)));
  const segmentOf = new Map<Node, Segment>();
  for (const s of g.segments) for (let i = s.start; i < s.end; i++) segmentOf.set(g.nodes[i], s);
  const rebuilt = new Map<Segment, Map<Node, Node>>();
  const copyOf = (node: Node, dY: (Value | null)[]): Node => {
    const segment = segmentOf.get(node);
    if (!segment) return node;
    let copies = rebuilt.get(segment);
    if (!copies) {
      copies = g.scope("recompute", () => rebuild(g, segment, dY.find((d) => d !== null)!));
      rebuilt.set(segment, copies);
    }
    return copies.get(node)!;
  };

  for (const node of ancestors(g, loss, live, constants).reverse()) {
    const dY = node.outputs.map(total);
    if (dY.every((d) => d === null)) continue;
    const rule = VJP[node.op];
    if (rule === NON_DIFFERENTIABLE) {
      throw new GraphError(
        `node '${node.name}' (${node.op}) is not differentiable but lies between loss and wrt`,
      );
    }
    const at = g.scope(`grad(${node.name})`, () => withLateWeights(g, copyOf(node, dY), dY));
    const dX = g.scope(`grad(${node.name})`, () => (rule as VjpRule<OpType>)(at, dY));
    node.inputs.forEach((x, i) => {
      const d = dX[i];
      if (!d || !live.has(x)) return;
      if (d.dtype !== x.dtype) {
        throw new GraphError(
          `rule of node '${node.name}' (${node.op}) gave input ${i} a ${d.dtype} gradient`,
        );
      }
      const fitted = g.scope(`grad(${node.name})`, () => unbroadcast(d, x));
      if (!sameShape(fitted.shape, x.shape)) {
        throw new GraphError(
          `rule of node '${node.name}' gave ${describe(x)} a gradient of shape ${formatShape(fitted.shape)}`,
        );
      }
      push(x, fitted);
    });
  }

  return wrt.map((w) => {
    const d = total(w);
    if (d) return d;
    if (options.allowUnused) return fullLike(w, 0);
    throw new GraphError(`loss ${describe(loss)} does not depend on ${describe(w)}`);
  });
}

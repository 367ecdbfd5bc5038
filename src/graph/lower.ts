/**
 * ONNX forms of the ops that some execution providers lack, written out when a graph is serialized.
 *
 * onnxruntime's WebGPU provider has no kernel for `Sum`, `LogSoftmax` or `SoftmaxCrossEntropyLoss`; those nodes
 * would run on the CPU, with a copy of every input to the host and of every output back on each run (a
 * [tokens, vocabulary] block for the loss). So the serializer writes them as the primitive ops every provider
 * runs, while the graph (and its gradient rules, such as the fused cross-entropy rule) keeps the op:
 *
 * - `Sum(x₁, …, xₙ)` → `Add(…Add(x₁, x₂)…, xₙ)`;
 * - `LogSoftmax(x)` → `z − log Σ exp z`, z = x − max x;
 * - `SoftmaxCrossEntropyLoss(s, labels)` → the log-probabilities as above, the label's one picked with
 *   `GatherElements` (an ignored label reads class 0 and is masked), then the reduction.
 *
 * Intermediate values are named after the node's output with a `/lowered/` suffix, so they cannot collide.
 *
 * @module
 */

import onnxProto from "onnx-proto";
import { ONNX_DTYPE } from "./dtype.ts";
import type { Node } from "./graph.ts";
import type { OpType } from "./ops.ts";

const { onnx } = onnxProto;
type NodeProto = onnxProto.onnx.INodeProto;
const T = onnx.AttributeProto.AttributeType;

/** Emits ONNX nodes with fresh intermediate names. */
class Emitter {
  readonly nodes: NodeProto[] = [];
  #n = 0;
  constructor(readonly prefix: string) {}

  /** A node of `op` on `inputs`; returns its output, `out` if given, else a fresh name. */
  op(op: string, inputs: string[], attribute: onnxProto.onnx.IAttributeProto[] = [], out?: string): string {
    const output = out ?? `${this.prefix}/lowered/${this.#n++}`;
    this.nodes.push({ name: `${output}/node`, opType: op, input: inputs, output: [output], attribute });
    return output;
  }

  /** A constant int64 vector (reduction axes, Unsqueeze axes). */
  ints(values: number[]): string {
    const t = { dims: [values.length], dataType: ONNX_DTYPE.int64, int64Data: values };
    return this.op("Constant", [], [{ name: "value", type: T.TENSOR, t }]);
  }

  /** A scalar int64 constant. */
  int(value: number): string {
    const t = { dims: [], dataType: ONNX_DTYPE.int64, int64Data: [value] };
    return this.op("Constant", [], [{ name: "value", type: T.TENSOR, t }]);
  }

  /** log-softmax of `x` along `axis`. */
  logSoftmax(x: string, axis: number, out?: string): string {
    const keep = [{ name: "keepdims", type: T.INT, i: 1 }];
    const axes = this.ints([axis]);
    const z = this.op("Sub", [x, this.op("ReduceMax", [x, axes], keep)]);
    const lse = this.op("Log", [this.op("ReduceSum", [this.op("Exp", [z]), axes], keep)]);
    return this.op("Sub", [z, lse], [], out);
  }
}

type Lowering<K extends OpType> = (node: Node<K>, e: Emitter) => void;

const LOWERINGS: { readonly [K in OpType]?: Lowering<K> } = {
  Sum: ({ inputs, outputs }, e) => {
    const names = inputs.map((v) => v.name);
    const last = names.length - 2;
    names.slice(1).reduce(
      (acc, x, i) => e.op("Add", [acc, x], [], i === last ? outputs[0].name : undefined),
      names[0],
    );
  },
  LogSoftmax: ({ inputs: [x], outputs: [y], attrs }, e) => {
    e.logSoftmax(x.name, attrs.axis < 0 ? attrs.axis + x.shape.length : attrs.axis, y.name);
  },
  SoftmaxCrossEntropyLoss: ({ inputs: [scores, labels], outputs: [loss, logProbOut], attrs }, e) => {
    const float = ONNX_DTYPE[scores.dtype];
    const logProb = e.logSoftmax(scores.name, 1, logProbOut.name);
    const valid = e.op("Not", [e.op("Equal", [labels.name, e.int(attrs.ignore_index)])]);
    const safe = e.op("Where", [valid, labels.name, e.int(0)]); // [N]
    const picked = e.op("GatherElements", [logProb, e.op("Unsqueeze", [safe, e.ints([1])])], [
      { name: "axis", type: T.INT, i: 1 },
    ]); // [N, 1]
    const weight = e.op("Cast", [valid], [{ name: "to", type: T.INT, i: float }]); // [N]
    const nll = e.op("Neg", [e.op("Mul", [e.op("Squeeze", [picked, e.ints([1])]), weight])]); // [N]
    const total = (x: string, out?: string) =>
      e.op("ReduceSum", [x, e.ints([0])], [{ name: "keepdims", type: T.INT, i: 0 }], out);
    if (attrs.reduction === "none") e.op("Identity", [nll], [], loss.name);
    else if (attrs.reduction === "sum") total(nll, loss.name);
    else e.op("Div", [total(nll), total(weight)], [], loss.name);
  },
};

/** The ONNX nodes for `node` when it has a lowering (see the module doc), else undefined. */
export function lower(node: Node): NodeProto[] | undefined {
  const lowering = LOWERINGS[node.op] as Lowering<OpType> | undefined;
  if (!lowering) return undefined;
  const e = new Emitter(node.outputs[0].name);
  lowering(node, e);
  return e.nodes;
}

/** Ops written as other ops (see the module doc). */
export const LOWERED_OPS: readonly OpType[] = Object.keys(LOWERINGS) as OpType[];

/**
 * Serializes a graph to an ONNX model through `onnx-proto` (protobufjs code generated from the ONNX schema).
 *
 * Only the nodes needed by the requested outputs are written (gradient rules may build more than is used), and
 * only the initializers those nodes read. All declared inputs are kept, so callers can feed them regardless. A few
 * ops are written as primitive ONNX ops that every execution provider runs (see {@link ./lower.ts}).
 *
 * @module
 */

import onnxProto from "onnx-proto";
import { type DType, type HostArray, ONNX_DTYPE, toHostArray } from "./dtype.ts";
import { type Graph, GraphError, type Node, type Value } from "./graph.ts";
import { OP_DEFS, OPSET, type OpType } from "./ops.ts";
import type { Shape } from "./shape.ts";
import { lower } from "./lower.ts";
import { liveNodes, validate } from "./validate.ts";

const { onnx } = onnxProto;

/** Format version written into every model's metadata. */
export const MODEL_FORMAT_VERSION = "1";

/** A named graph output: a value and the name callers will read it by. */
export type Outputs = Readonly<Record<string, Value>>;

function valueInfo(name: string, dtype: DType, shape: Shape): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ONNX_DTYPE[dtype],
        shape: { dim: shape.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function bytesOf(a: HostArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function tensor(v: Value): onnxProto.onnx.ITensorProto {
  const init = v.init!;
  const dims = v.shape.map(Number);
  const base = { name: v.name, dims, dataType: ONNX_DTYPE[v.dtype] };
  if (init.kind === "inline") return { ...base, rawData: bytesOf(init.data) };
  return {
    ...base,
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: "location", value: init.location },
      { key: "offset", value: String(init.offset) },
      { key: "length", value: String(init.length) },
    ],
  };
}

function attribute(node: Node, key: string): onnxProto.onnx.IAttributeProto {
  const value = (node.attrs as Record<string, unknown>)[key];
  const T = onnx.AttributeProto.AttributeType;
  if (key === "to") return { name: key, type: T.INT, i: ONNX_DTYPE[value as DType] };
  if (node.op === "ConstantOfShape" && key === "value") {
    const dtype = (node.attrs as { dtype: DType }).dtype;
    const t = {
      dims: [1],
      dataType: ONNX_DTYPE[dtype],
      rawData: bytesOf(toHostArray(dtype, [value as number])),
    };
    return { name: key, type: T.TENSOR, t };
  }
  if (typeof value === "number") return { name: key, type: T.INT, i: value };
  if (typeof value === "string") return { name: key, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name: key, type: T.INTS, ints: value as number[] };
  throw new GraphError(`node '${node.name}' (${node.op}): cannot serialize attribute '${key}' = ${value}`);
}

/** Options of {@link serialize}. */
export interface SerializeOptions {
  /** Free-form metadata written into the model (the format version is always added). */
  metadata?: Record<string, string>;
}

/**
 * Validates the part of `g` that computes `outputs` and returns it as ONNX model bytes. An output whose name
 * differs from its value's gets an Identity node.
 */
export function serialize(g: Graph, outputs: Outputs, options: SerializeOptions = {}): Uint8Array {
  const named = Object.entries(outputs);
  const values = named.map(([, v]) => v);
  const nodes = liveNodes(g, values);
  validate(g, values, nodes);
  const used = new Set<Value>(values);
  for (const n of nodes) for (const v of n.inputs) used.add(v);

  const protoNodes: onnxProto.onnx.INodeProto[] = nodes.flatMap((n) =>
    lower(n) ?? [{
      name: n.name,
      opType: n.op,
      input: n.inputs.map((v) => v.name),
      output: n.outputs.map((v) => v.name),
      attribute: (OP_DEFS[n.op as OpType].onnxAttrs as readonly string[]).map((k) => attribute(n, k)),
    }]
  );
  const graphOutputs = named.map(([name, v]) => {
    if (name !== v.name) {
      protoNodes.push({ name: `output/${name}`, opType: "Identity", input: [v.name], output: [name] });
    }
    return valueInfo(name, v.dtype, v.shape);
  });
  const metadata = { "flexora.format_version": MODEL_FORMAT_VERSION, ...options.metadata };
  const model = onnx.ModelProto.create({
    irVersion: 10,
    opsetImport: [{ domain: "", version: OPSET }],
    producerName: "flexora",
    metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
    graph: {
      name: g.name,
      node: protoNodes,
      input: g.inputs.map((v) => valueInfo(v.name, v.dtype, v.shape)),
      initializer: g.initializers.filter((v) => used.has(v)).map(tensor),
      output: graphOutputs,
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

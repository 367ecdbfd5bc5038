/**
 * Base weights as graph initializers that point into the checkpoint's safetensors files (ONNX external data), so
 * no weights are copied into a serialized graph and models past protobuf's 2 GB limit work. Stored 16-bit weights
 * are cast to the graph's compute type in the graph (onnxruntime folds the cast once, at session creation).
 *
 * @module
 */

import { basename } from "node:path";
import { cast } from "../graph/build.ts";
import type { DType } from "../graph/dtype.ts";
import type { Graph, Value } from "../graph/graph.ts";
import type { Checkpoint, SafetensorsDType } from "./safetensors.ts";

const DTYPES: Partial<Record<SafetensorsDType, DType>> = {
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  F64: "float64",
};

/** A checkpoint's tensors, bound to graphs on demand. */
export class WeightStore {
  readonly checkpoint: Checkpoint;
  readonly #bound = new WeakMap<Graph, Map<string, Value>>();
  #external?: Promise<Record<string, Uint8Array>>;

  constructor(checkpoint: Checkpoint) {
    this.checkpoint = checkpoint;
  }

  /** True when the checkpoint holds `name`. */
  has(name: string): boolean {
    return this.checkpoint.tensors.has(name);
  }

  /** The tensor `name` in `g`, in the graph's float type (one initializer per graph, however often asked). */
  weight(g: Graph, name: string): Value {
    let bound = this.#bound.get(g);
    if (!bound) this.#bound.set(g, bound = new Map());
    let v = bound.get(name);
    if (v) return v;
    const info = this.checkpoint.get(name);
    const dtype = DTYPES[info.dtype];
    if (!dtype) {
      throw new Error(
        `${info.file}: tensor '${name}' is ${info.dtype}; weights must be F32, F16, BF16 or F64`,
      );
    }
    const init = g.initializer(name, info.shape, {
      location: basename(info.file),
      offset: info.offset,
      length: info.length,
    }, dtype);
    v = g.scope(name, () => cast(init, g.float));
    bound.set(name, v);
    return v;
  }

  /**
   * The bytes of every checkpoint file by external-data location, for {@link createSession}'s `externalData`;
   * read once and shared by every session built on this store.
   */
  externalData(): Promise<Record<string, Uint8Array>> {
    this.#external ??= (async () => {
      const data: Record<string, Uint8Array> = {};
      for (const file of this.checkpoint.files) data[basename(file)] = await Deno.readFile(file);
      return data;
    })();
    return this.#external;
  }
}

/**
 * Base weights as graph initializers that point into the checkpoint's safetensors files (ONNX external data), so
 * no weights are copied into a serialized graph and models past protobuf's 2 GB limit work. Sessions map the
 * files themselves ({@link WeightStore.sessionData}): one copy of every weight, the page cache's, read lazily.
 *
 * In a float32 or float64 graph a stored 16-bit weight is cast to the compute type in the graph, right before its
 * use (sessions do not fold constants, so the float32 copy is a step's temporary, not a second copy). In a
 * float16 graph, F16 weights point into their files as they are, and F32/BF16 ones into one float16 copy made in
 * memory once per store.
 *
 * @module
 */

import type { SessionOptions } from "../runtime/session.ts";
import { cast } from "../graph/build.ts";
import type { ComputeFloat, DType } from "../graph/dtype.ts";
import type { Graph, Value } from "../graph/graph.ts";
import { f32ToF16 } from "../util/float16.ts";
import { type Checkpoint, readTensorF32, type SafetensorsDType, type TensorInfo } from "./safetensors.ts";

const DTYPES: Partial<Record<SafetensorsDType, DType>> = {
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  F64: "float64",
};

/** The external-data location of the in-memory float16 copy of a checkpoint's F32/BF16/F64 weights. */
export const FLOAT16_COPY = "flexora.float16.bin";

/** Alignment of each tensor in the float16 copy, in bytes. */
const ALIGN = 64;

/** Options of a {@link WeightStore}. */
export interface WeightStoreOptions {
  /** The compute type graphs built on this store use unless they ask for another (default float32). */
  dtype?: ComputeFloat;
}

/** A checkpoint's tensors, bound to graphs on demand. */
export class WeightStore {
  readonly checkpoint: Checkpoint;
  /** The compute type the model's graphs default to. */
  readonly dtype: ComputeFloat;
  readonly #bound = new WeakMap<Graph, Map<string, Value>>();
  #copy?: Promise<Uint8Array>;
  /** Where each converted tensor lies in the float16 copy; laid out at the first float16 graph. */
  #copyLayout?: { places: Map<string, { offset: number; length: number }>; size: number };

  constructor(checkpoint: Checkpoint, options: WeightStoreOptions = {}) {
    this.checkpoint = checkpoint;
    this.dtype = options.dtype ?? "float32";
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
    if (g.float === "float16" && dtype !== "float16") {
      const place = this.#copyPlaces().get(name)!;
      v = g.initializer(name, info.shape, { location: FLOAT16_COPY, ...place }, "float16");
    } else {
      const init = g.initializer(name, info.shape, {
        location: this.checkpoint.locations.get(info.file)!,
        offset: info.offset,
        length: info.length,
      }, dtype);
      v = g.scope(name, () => cast(init, g.float));
    }
    bound.set(name, v);
    return v;
  }

  /** Offsets of every F32/BF16/F64 tensor in the float16 copy. */
  #copyPlaces(): Map<string, { offset: number; length: number }> {
    if (!this.#copyLayout) {
      const places = new Map<string, { offset: number; length: number }>();
      let size = 0;
      for (const info of this.checkpoint.tensors.values()) {
        if (info.dtype !== "F32" && info.dtype !== "BF16" && info.dtype !== "F64") continue;
        const length = 2 * info.shape.reduce((a, b) => a * b, 1);
        places.set(info.name, { offset: size, length });
        size += Math.ceil(length / ALIGN) * ALIGN;
      }
      this.#copyLayout = { places, size };
    }
    return this.#copyLayout.places;
  }

  /**
   * Where a session finds the weights `graph`'s initializers point at (without a graph: any graph built on this
   * store), for {@link createSession}: the checkpoint's folder, which onnxruntime memory-maps the safetensors
   * files from (never read into JavaScript), and the float16 copy in memory when the graph uses it (made once per
   * store and shared by every session built on it).
   */
  async sessionData(graph?: Graph): Promise<Pick<SessionOptions, "externalData" | "externalDataFolder">> {
    const usesCopy = graph
      ? graph.initializers.some((v) => v.init?.kind === "external" && v.init.location === FLOAT16_COPY)
      : this.#copyLayout !== undefined || this.dtype === "float16";
    if (!usesCopy) return { externalDataFolder: this.checkpoint.dataFolder };
    this.#copy ??= this.#float16Copy();
    return {
      externalDataFolder: this.checkpoint.dataFolder,
      externalData: { [FLOAT16_COPY]: await this.#copy },
    };
  }

  /** Every F32/BF16/F64 tensor converted to float16, one tensor read at a time. */
  async #float16Copy(): Promise<Uint8Array> {
    const places = this.#copyPlaces();
    const out = new Uint8Array(this.#copyLayout!.size);
    for (const [name, { offset, length }] of places) {
      const info = this.checkpoint.get(name);
      const half = toFloat16(info, await readTensorF32(info));
      out.set(new Uint8Array(half.buffer, half.byteOffset, length), offset);
    }
    return out;
  }
}

/** float32 values of `info` as float16 bits; a finite value past float16's range is an error naming the tensor. */
function toFloat16(info: TensorInfo, x: Float32Array): Uint16Array {
  const half = f32ToF16(x);
  for (let i = 0; i < half.length; i++) {
    if ((half[i] & 0x7fff) === 0x7c00 && Number.isFinite(x[i])) {
      throw new Error(
        `${info.file}: tensor '${info.name}' holds ${x[i]} (element ${i}), beyond float16's range ` +
          `(±65504); compute in float32 instead`,
      );
    }
  }
  return half;
}

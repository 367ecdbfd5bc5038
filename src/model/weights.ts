/**
 * Base weights as graph initializers that point into the checkpoint's safetensors files (ONNX external data), so
 * no weights are copied into a serialized graph and models past protobuf's 2 GB limit work. Sessions map the
 * files themselves ({@link WeightStore.sessionData}): one copy of every weight, the page cache's, read lazily.
 *
 * In a float32 or float64 graph a stored 16-bit weight is cast to the compute type in the graph, right before its
 * use (sessions do not fold constants, so the float32 copy is a step's temporary, not a second copy). In a
 * float16 graph, F16 weights point into their files as they are, and F32/BF16 ones into one float16 copy made in
 * memory once per store. With a base dtype ({@link WeightStoreOptions.baseDtype}) every graph's weights are
 * stored in it: tensors of another type point into one copy in that type made in memory once per store, and are
 * cast to the graph's compute type in the graph, the same way as a 16-bit checkpoint's.
 *
 * @module
 */

import type { SessionOptions } from "../runtime/session.ts";
import { cast } from "../graph/build.ts";
import type { ComputeFloat, DType } from "../graph/dtype.ts";
import type { Graph, Value } from "../graph/graph.ts";
import { f32ToBf16, f32ToF16 } from "../util/float16.ts";
import { type Checkpoint, readTensorF32, type SafetensorsDType, type TensorInfo } from "./safetensors.ts";

const DTYPES: Partial<Record<SafetensorsDType, DType>> = {
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  F64: "float64",
};

/** The external-data location of the in-memory float16 copy of a checkpoint's F32/BF16/F64 weights. */
export const FLOAT16_COPY = "flexora.float16.bin";

/** How frozen base weights are stored (`--base-dtype`): bfloat16, float16 or float32. */
export type BaseDtype = "bf16" | "f16" | "f32";

/** The base dtypes, as `--base-dtype` spells them. */
export const BASE_DTYPES: readonly BaseDtype[] = ["bf16", "f16", "f32"];

const BASE: Record<BaseDtype, "bfloat16" | "float16" | "float32"> = {
  bf16: "bfloat16",
  f16: "float16",
  f32: "float32",
};

/** Alignment of each tensor in the float16 copy, in bytes. */
const ALIGN = 64;

/** Options of a {@link WeightStore}. */
export interface WeightStoreOptions {
  /** The compute type graphs built on this store use unless they ask for another (default float32). */
  dtype?: ComputeFloat;
  /**
   * How the frozen weights are stored (default: as the checkpoint stores them, and float16 in float16 graphs):
   * tensors of another type are converted once into an in-memory copy (bf16 rounding to nearest even; a value
   * past the type's range is an error naming the tensor) and cast to the compute type in the graph, right before
   * their use.
   */
  baseDtype?: BaseDtype;
}

/** A checkpoint's tensors, bound to graphs on demand. */
export class WeightStore {
  readonly checkpoint: Checkpoint;
  /** The compute type the model's graphs default to. */
  readonly dtype: ComputeFloat;
  /** How the frozen weights are stored; undefined: as the checkpoint stores them. */
  readonly baseDtype?: BaseDtype;
  /** The type of the in-memory copy: the base dtype's, or float16 (for float16 graphs) without one. */
  readonly #copyDtype: "bfloat16" | "float16" | "float32";
  /** The copy's external-data location. */
  readonly #copyLocation: string;
  readonly #bound = new WeakMap<Graph, Map<string, Value>>();
  #copy?: Promise<Uint8Array>;
  /** Where each converted tensor lies in the copy; laid out at the first graph that uses it. */
  #copyLayout?: { places: Map<string, { offset: number; length: number }>; size: number };

  constructor(checkpoint: Checkpoint, options: WeightStoreOptions = {}) {
    this.checkpoint = checkpoint;
    this.dtype = options.dtype ?? "float32";
    if (options.baseDtype !== undefined && !BASE_DTYPES.includes(options.baseDtype)) {
      throw new Error(`'baseDtype' must be bf16, f16 or f32, got ${JSON.stringify(options.baseDtype)}`);
    }
    this.baseDtype = options.baseDtype;
    this.#copyDtype = this.baseDtype ? BASE[this.baseDtype] : "float16";
    this.#copyLocation = this.#copyDtype === "float16" ? FLOAT16_COPY : `flexora.${this.#copyDtype}.bin`;
  }

  /** True when the checkpoint holds `name`. */
  has(name: string): boolean {
    return this.checkpoint.tensors.has(name);
  }

  /**
   * The tensor `name` in `g`, in the graph's float type (one initializer per graph, however often asked): stored
   * in the base dtype (without one: as in the checkpoint, float16 in a float16 graph) and cast to the graph's type
   * right before use.
   */
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
    const stored = this.baseDtype ? this.#copyDtype : g.float === "float16" ? "float16" : dtype;
    const init = stored !== dtype
      ? g.initializer(
        name,
        info.shape,
        { location: this.#copyLocation, ...this.#copyPlaces().get(name)! },
        stored,
      )
      : g.initializer(name, info.shape, {
        location: this.checkpoint.locations.get(info.file)!,
        offset: info.offset,
        length: info.length,
      }, dtype);
    v = g.scope(name, () => cast(init, g.float));
    bound.set(name, v);
    return v;
  }

  /** Offsets in the copy of every tensor the checkpoint stores in another type than the copy's. */
  #copyPlaces(): Map<string, { offset: number; length: number }> {
    if (!this.#copyLayout) {
      const places = new Map<string, { offset: number; length: number }>();
      const width = this.#copyDtype === "float32" ? 4 : 2;
      let size = 0;
      for (const info of this.checkpoint.tensors.values()) {
        const dtype = DTYPES[info.dtype];
        if (!dtype || dtype === this.#copyDtype) continue;
        const length = width * info.shape.reduce((a, b) => a * b, 1);
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
   * files from (never read into JavaScript), and the in-memory copy (float16, or the base dtype) when the graph
   * uses it (made once per store and shared by every session built on it).
   */
  async sessionData(graph?: Graph): Promise<Pick<SessionOptions, "externalData" | "externalDataFolder">> {
    const usesCopy = graph
      ? graph.initializers.some((v) => v.init?.kind === "external" && v.init.location === this.#copyLocation)
      : this.#copyLayout !== undefined || this.dtype === "float16" || this.baseDtype !== undefined;
    if (!usesCopy) return { externalDataFolder: this.checkpoint.dataFolder };
    this.#copy ??= this.#makeCopy();
    return {
      externalDataFolder: this.checkpoint.dataFolder,
      externalData: { [this.#copyLocation]: await this.#copy },
    };
  }

  /** Every tensor of another type than the copy's, converted to it, one tensor read at a time. */
  async #makeCopy(): Promise<Uint8Array> {
    const places = this.#copyPlaces();
    const out = new Uint8Array(this.#copyLayout!.size);
    for (const [name, { offset, length }] of places) {
      const info = this.checkpoint.get(name);
      const x = await readTensorF32(info);
      const v = this.#copyDtype === "float16"
        ? toFloat16(info, x, this.baseDtype ? "store the base weights in bf16 or f32 instead" : undefined)
        : this.#copyDtype === "bfloat16"
        ? toBfloat16(info, x)
        : x;
      out.set(new Uint8Array(v.buffer, v.byteOffset, length), offset);
    }
    return out;
  }
}

/** float32 values of `info` as bfloat16 bits; a finite value rounding past bfloat16's range is an error naming it. */
function toBfloat16(info: TensorInfo, x: Float32Array): Uint16Array {
  const bits = f32ToBf16(x);
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7fff) === 0x7f80 && Number.isFinite(x[i])) {
      throw new Error(
        `${info.file}: tensor '${info.name}' holds ${x[i]} (element ${i}), beyond bfloat16's range; ` +
          `store the base weights in f32 instead`,
      );
    }
  }
  return bits;
}

/** float32 values of `info` as float16 bits; a finite value past float16's range is an error naming the tensor. */
function toFloat16(info: TensorInfo, x: Float32Array, advice = "compute in float32 instead"): Uint16Array {
  const half = f32ToF16(x);
  for (let i = 0; i < half.length; i++) {
    if ((half[i] & 0x7fff) === 0x7c00 && Number.isFinite(x[i])) {
      throw new Error(
        `${info.file}: tensor '${info.name}' holds ${x[i]} (element ${i}), beyond float16's range ` +
          `(±65504); ${advice}`,
      );
    }
  }
  return half;
}

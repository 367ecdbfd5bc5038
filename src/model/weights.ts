/**
 * Base weights as graph initializers that point into the checkpoint's safetensors files (ONNX external data), so
 * no weights are copied into a serialized graph and models past protobuf's 2 GB limit work. Sessions map the
 * files themselves ({@link WeightStore.sessionData}): one copy of every weight, the page cache's, read lazily.
 *
 * In a float32 or float64 graph a stored 16-bit weight is cast to the compute type in the graph, right before its
 * use (sessions do not fold constants, so the float32 copy is a step's temporary, not a second copy). In a
 * float16 graph, F16 weights point into their files as they are; when the checkpoint holds tensors of another
 * type, every weight points into one float16 copy of the checkpoint instead. With a base dtype
 * ({@link WeightStoreOptions.baseDtype}) every graph's weights are stored in it, the same way: from the checkpoint
 * when it holds nothing else, otherwise from one copy in that type, and cast to the graph's compute type in the
 * graph, as a 16-bit checkpoint's are.
 *
 * The copy is a file, written once per checkpoint and type into a cache folder ({@link weightCacheDir}; one
 * tensor converted at a time, then renamed into place, so a file there is always whole) and memory-mapped by
 * onnxruntime like the checkpoint: no copy is held in JavaScript or handed to onnxruntime as bytes (which it
 * would copy again). It holds every float tensor of the checkpoint, so a session reads from one folder only.
 * Its folder is named by a hash of the checkpoint files' real paths, sizes and modification times and the copy's
 * type: a changed checkpoint gets a new copy; old ones can be deleted at any time.
 *
 * @module
 */

import { join } from "node:path";
import type { SessionOptions } from "../runtime/session.ts";
import { cast, copyAfter } from "../graph/build.ts";
import type { ComputeFloat, DType } from "../graph/dtype.ts";
import type { Graph, Value } from "../graph/graph.ts";
import { f32ToBf16, f32ToF16 } from "../util/float16.ts";
import { encodeHex } from "../util/hex.ts";
import { type Checkpoint, readTensorF32, type SafetensorsDType, type TensorInfo } from "./safetensors.ts";

const DTYPES: Partial<Record<SafetensorsDType, DType>> = {
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  F64: "float64",
};

/** The external-data location (file name) of the float16 copy of a checkpoint's weights. */
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

/** Alignment of each tensor in the copy, in bytes. */
const ALIGN = 64;

/** The copy's layout version, part of its folder's hash: a change of layout makes new copies. */
const COPY_VERSION = 1;

/**
 * The default folder of the weight copies: `$XDG_CACHE_HOME/flexora/weights`, else `~/.cache/flexora/weights`.
 *
 * @example
 * ```ts
 * import { weightCacheDir } from "./weights.ts";
 * const env: Record<string, string> = { HOME: "/home/a" };
 * if (weightCacheDir((k) => env[k]) !== "/home/a/.cache/flexora/weights") throw new Error("under ~/.cache");
 * ```
 */
export function weightCacheDir(env: (name: string) => string | undefined = readEnv): string {
  const home = env("HOME") ?? env("USERPROFILE") ?? ".";
  return join(env("XDG_CACHE_HOME") || join(home, ".cache"), "flexora", "weights");
}

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // without --allow-env the default applies
  }
}

/** Options of a {@link WeightStore}. */
export interface WeightStoreOptions {
  /** The compute type graphs built on this store use unless they ask for another (default float32). */
  dtype?: ComputeFloat;
  /**
   * How the frozen weights are stored (default: as the checkpoint stores them, and float16 in float16 graphs):
   * a checkpoint holding tensors of another type is converted once into a copy file (bf16 rounding to nearest
   * even; a value past the type's range is an error naming the tensor), and each weight is cast to the compute
   * type in the graph, right before its use.
   */
  baseDtype?: BaseDtype;
  /** The folder of the copy files (default {@link weightCacheDir}). */
  cacheDir?: string;
}

/** A checkpoint's tensors, bound to graphs on demand. */
export class WeightStore {
  readonly checkpoint: Checkpoint;
  /** The compute type the model's graphs default to. */
  readonly dtype: ComputeFloat;
  /** How the frozen weights are stored; undefined: as the checkpoint stores them. */
  readonly baseDtype?: BaseDtype;
  /** The type of the copy: the base dtype's, or float16 (for float16 graphs) without one. */
  readonly #copyDtype: "bfloat16" | "float16" | "float32";
  /** The copy's external-data location (its file name). */
  readonly #copyLocation: string;
  readonly #cacheDir: string;
  readonly #bound = new WeakMap<Graph, Map<string, Value>>();
  readonly #stored = new WeakMap<Graph, Map<string, Value>>();
  /** The folder holding the written copy; made at the first session that uses it. */
  #copyFolder?: Promise<string>;
  /** Where each tensor lies in the copy (null: the checkpoint holds no other type, so no copy is needed). */
  #copyLayout?: { places: Map<string, { offset: number; length: number }>; size: number } | null;

  constructor(checkpoint: Checkpoint, options: WeightStoreOptions = {}) {
    this.checkpoint = checkpoint;
    this.dtype = options.dtype ?? "float32";
    if (options.baseDtype !== undefined && !BASE_DTYPES.includes(options.baseDtype)) {
      throw new Error(`'baseDtype' must be bf16, f16 or f32, got ${JSON.stringify(options.baseDtype)}`);
    }
    this.baseDtype = options.baseDtype;
    this.#copyDtype = this.baseDtype ? BASE[this.baseDtype] : "float16";
    this.#copyLocation = this.#copyDtype === "float16" ? FLOAT16_COPY : `flexora.${this.#copyDtype}.bin`;
    this.#cacheDir = options.cacheDir ?? weightCacheDir();
  }

  /** True when the checkpoint holds `name`. */
  has(name: string): boolean {
    return this.checkpoint.tensors.has(name);
  }

  /**
   * The tensor `name` in `g`, in the graph's float type (one initializer per graph, however often asked): stored
   * in the base dtype (without one: as in the checkpoint, float16 in a float16 graph) and cast to the graph's type.
   * With `after` (the activation it is used with), a stored 16-bit weight gets a cast of its own, made once
   * `after` is computed ({@link copyAfter}): onnxruntime would otherwise run a cast that only reads an
   * initializer whenever it likes, as early as the start of the step, and keep every layer's float32 copy live.
   */
  weight(g: Graph, name: string, after?: Value): Value {
    const init = this.stored(g, name);
    if (after && init.dtype !== g.float) return g.scope(name, () => cast(copyAfter(init, after), g.float));
    let bound = this.#bound.get(g);
    if (!bound) this.#bound.set(g, bound = new Map());
    let v = bound.get(name);
    if (v) return v;
    v = g.scope(name, () => cast(init, g.float));
    bound.set(name, v);
    return v;
  }

  /**
   * The initializer of tensor `name` in `g` as it is stored, before {@link weight}'s cast: for ops that select
   * from a weight (the embedding's `Gather`), which can then cast only the rows they select.
   */
  stored(g: Graph, name: string): Value {
    let inits = this.#stored.get(g);
    if (!inits) this.#stored.set(g, inits = new Map());
    let v = inits.get(name);
    if (v) return v;
    const info = this.checkpoint.get(name);
    const dtype = DTYPES[info.dtype];
    if (!dtype) {
      throw new Error(
        `${info.file}: tensor '${name}' is ${info.dtype}; weights must be F32, F16, BF16 or F64`,
      );
    }
    const places = this.baseDtype || g.float === "float16" ? this.#copyPlaces() : null;
    v = places
      ? g.initializer(
        name,
        info.shape,
        { location: this.#copyLocation, ...places.get(name)! },
        this.#copyDtype,
      )
      : g.initializer(name, info.shape, {
        location: this.checkpoint.locations.get(info.file)!,
        offset: info.offset,
        length: info.length,
      }, dtype);
    inits.set(name, v);
    return v;
  }

  /**
   * Offsets in the copy of every float tensor of the checkpoint, or null when the checkpoint stores every float
   * tensor in the copy's type already (graphs then read the checkpoint itself).
   */
  #copyPlaces(): Map<string, { offset: number; length: number }> | null {
    if (this.#copyLayout === undefined) {
      const floats = [...this.checkpoint.tensors.values()].filter((info) => DTYPES[info.dtype]);
      if (floats.every((info) => DTYPES[info.dtype] === this.#copyDtype)) this.#copyLayout = null;
      else {
        const places = new Map<string, { offset: number; length: number }>();
        const width = this.#copyDtype === "float32" ? 4 : 2;
        let size = 0;
        for (const info of floats) {
          const length = width * info.shape.reduce((a, b) => a * b, 1);
          places.set(info.name, { offset: size, length });
          size += Math.ceil(length / ALIGN) * ALIGN;
        }
        this.#copyLayout = { places, size };
      }
    }
    return this.#copyLayout?.places ?? null;
  }

  /**
   * Where a session finds the weights `graph`'s initializers point at (without a graph: any graph built on this
   * store), for {@link createSession}: a folder onnxruntime memory-maps them from, never bytes read into
   * JavaScript. That is the checkpoint's folder, or the copy's (float16, or the base dtype) when the graph uses
   * the copy, which is written first if the cache does not hold it yet (once per store, shared by every session
   * built on it).
   */
  async sessionData(graph?: Graph): Promise<Pick<SessionOptions, "externalData" | "externalDataFolder">> {
    const usesCopy = graph
      ? graph.initializers.some((v) => v.init?.kind === "external" && v.init.location === this.#copyLocation)
      : (this.dtype === "float16" || this.baseDtype !== undefined || this.#copyLayout !== undefined) &&
        this.#copyPlaces() !== null;
    return { externalDataFolder: usesCopy ? await this.#folder() : this.checkpoint.dataFolder };
  }

  /**
   * The path of the copy file that graphs in the store's compute type read, written if the cache does not hold
   * it yet; null when they read the checkpoint itself (no base dtype and float32 or float64 compute, or a
   * checkpoint storing every float tensor in the copy's type already).
   */
  async copyFile(): Promise<string | null> {
    const copied = this.baseDtype !== undefined || this.dtype === "float16";
    return copied && this.#copyPlaces() ? join(await this.#folder(), this.#copyLocation) : null;
  }

  /** The copy's folder, once written (a failed write is tried again at the next call). */
  #folder(): Promise<string> {
    if (!this.#copyFolder) {
      this.#copyFolder = this.#writeCopy();
      this.#copyFolder.catch(() => this.#copyFolder = undefined);
    }
    return this.#copyFolder;
  }

  /**
   * Writes the copy into its cache folder unless it is there: every float tensor converted to the copy's type,
   * one tensor read at a time, into a temporary file renamed into place once whole. Returns the folder.
   */
  async #writeCopy(): Promise<string> {
    const places = this.#copyPlaces()!;
    const identity = [];
    for (const file of this.checkpoint.files) {
      const real = await Deno.realPath(file);
      const { size, mtime } = await Deno.stat(real);
      identity.push({ file: real, size, mtime: mtime?.getTime() ?? null });
    }
    const key = JSON.stringify({ version: COPY_VERSION, dtype: this.#copyDtype, files: identity });
    const hash = encodeHex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key))).slice(0, 32);
    const folder = join(this.#cacheDir, hash);
    const path = join(folder, this.#copyLocation);
    const size = this.#copyLayout!.size;
    try {
      if ((await Deno.stat(path)).size === size) return folder;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    try {
      await Deno.mkdir(folder, { recursive: true });
    } catch (e) {
      throw new Error(
        `Cannot write the ${this.#copyDtype} copy of ${this.checkpoint.dir}'s weights into ${folder}: ` +
          `${(e as Error).message} (set XDG_CACHE_HOME, or pass another cache folder)`,
      );
    }
    const temp = `${path}.${crypto.randomUUID()}.tmp`;
    try {
      using file = await Deno.open(temp, { write: true, createNew: true });
      for (const [name, { offset, length }] of places) {
        const info = this.checkpoint.get(name);
        const x = await readTensorF32(info);
        const v = this.#copyDtype === "float16"
          ? toFloat16(info, x, this.baseDtype ? "store the base weights in bf16 or f32 instead" : undefined)
          : this.#copyDtype === "bfloat16"
          ? toBfloat16(info, x)
          : x;
        await file.seek(offset, Deno.SeekMode.Start);
        const bytes = new Uint8Array(v.buffer, v.byteOffset, length);
        for (let done = 0; done < length;) done += await file.write(bytes.subarray(done));
      }
      await file.truncate(size);
      await Deno.rename(temp, path);
    } catch (e) {
      await Deno.remove(temp).catch(() => {});
      throw e;
    }
    return folder;
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

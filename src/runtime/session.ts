/**
 * Running serialized graphs with onnxruntime-node.
 *
 * Large initializers live outside the model (ONNX external data). A model given as bytes reads them from files in
 * `externalDataFolder` (onnxruntime memory-maps them: the pages are the file's, shared by every session and read
 * only when touched), or from bytes in memory given by `externalData` (checked first). A model given as a path
 * reads them beside the file; onnxruntime rejects absolute locations, `..` and symlinks that leave its folder.
 *
 * Weights stay as the file holds them unless a caller opts back in: by default onnxruntime neither folds
 * constants (which would materialize a transposed, sliced or cast copy of each weight it reaches) nor pre-packs
 * MatMul/Gemm weights (a packed copy per session). Both were measured (BENCHMARKS.md, "Weights mapped once").
 *
 * @example
 * ```ts
 * import { Graph } from "../graph/graph.ts";
 * import { add } from "../graph/build.ts";
 * import { serialize } from "../graph/serialize.ts";
 * import { createSession, hostTensor } from "./session.ts";
 * const g = new Graph({ float: "float64" });
 * const x = g.input("x", "float64", [2]);
 * const session = await createSession(serialize(g, { y: add(x, 1) }));
 * const { y } = await session.run({ x: hostTensor("float64", [2], [1, 2]) });
 * if (y.data[1] !== 3) throw new Error(`expected 3, got ${y.data[1]}`);
 * await session.release();
 * ```
 *
 * @module
 */

import * as ort from "onnxruntime-node";
import { allocate, type DType, type HostArray, toHostArray } from "../graph/dtype.ts";
import { identity } from "../graph/build.ts";
import { Graph } from "../graph/graph.ts";
import { serialize } from "../graph/serialize.ts";
import { type Placement, placementFromProfile } from "./placement.ts";

/** A tensor in host memory. */
export interface HostTensor {
  readonly dtype: DType;
  readonly dims: readonly number[];
  readonly data: HostArray;
}

/** Makes a host tensor from numbers (or an existing array of the right type). */
export function hostTensor(
  dtype: DType,
  dims: readonly number[],
  data?: ArrayLike<number> | HostArray,
): HostTensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const array = data === undefined
    ? allocate(dtype, n)
    : ArrayBuffer.isView(data)
    ? data as HostArray
    : toHostArray(dtype, data as ArrayLike<number>);
  if (array.length !== n) {
    throw new Error(`tensor of shape [${dims}] needs ${n} elements, got ${array.length}`);
  }
  return { dtype, dims, data: array };
}

/** Options of {@link createSession}. */
export interface SessionOptions {
  /** Intra-op threads (default: the number of cores; more than that halves MatMul throughput). */
  threads?: number;
  /** Bytes for external-data locations, when the model is given as bytes (looked up before the folder). */
  externalData?: Readonly<Record<string, Uint8Array>>;
  /** The folder external-data locations of a model given as bytes are relative to (a checkpoint's folder). */
  externalDataFolder?: string;
  /**
   * Let onnxruntime fold constant subgraphs (default false). Folding turns `MatMul(x, Transpose(W))` into a
   * transposed copy of W beside W, a slice of the tied embedding into copies of its rows, and a 16-bit weight's
   * Cast into a float32 copy: each a second copy of a frozen weight, made at session creation.
   */
  foldConstants?: boolean;
  /** Let MatMul/Gemm pre-pack constant weights (default false): a packed copy of every weight per session. */
  prepack?: boolean;
  /** Execution providers in order of preference (default `["cpu"]`). */
  providers?: string[];
  /**
   * onnxruntime graph optimizations: "all" (default) or "basic". Float64 graphs need "basic": some of
   * onnxruntime's fusions (x·sigmoid(x) into QuickGelu, for one) have float32 kernels only.
   */
  optimization?: "all" | "basic";
  /**
   * onnxruntime's memory pattern (default false). On, onnxruntime plans one block for the tensors of a run after
   * the first run of those shapes and allocates it beside what the first run left in the arena, so the second
   * run grows memory and is as slow as the first (a 100M model's all-layer step at 4×256: peak 4158 MiB instead
   * of 2844 MiB). Off, every run takes its tensors from the arena that the first run filled: memory stops
   * growing after the first run, at no measurable cost per step (BENCHMARKS.md, "Warm-up steps").
   */
  memoryPattern?: boolean;
  /**
   * Called once, after the first run, with where the session's nodes ran (from onnxruntime's profile of that
   * run; profiling stops after it).
   */
  onPlacement?: (placement: Placement) => void;
  /** The graph's name in the placement report (default "model"). */
  name?: string;
  /**
   * Outputs to leave in device memory, as {@link DeviceTensor}s (state fed back on the next run): honoured when
   * the first provider is WebGPU (onnxruntime-node binds device buffers for WebGPU only); elsewhere they come
   * back to the host as usual.
   */
  deviceOutputs?: readonly string[];
}

/**
 * A tensor a session left in device memory (see {@link SessionOptions.deviceOutputs}): feed it to a session on
 * the same device, or {@link download} it. Its memory is freed by {@link DeviceTensor.dispose} (or when it is
 * garbage-collected).
 */
export class DeviceTensor {
  constructor(readonly dtype: DType, readonly dims: readonly number[], readonly ort: ort.Tensor) {}

  /** Frees the device buffer now. */
  dispose(): void {
    this.ort.dispose();
  }
}

/** A tensor in host or device memory. */
export type Tensor = HostTensor | DeviceTensor;

/** Bytes a session moved between host and device memory for its feeds and outputs (not inside a run). */
export interface Traffic {
  runs: number;
  /** Host feeds of a session whose first provider is not the CPU. */
  toDevice: number;
  /** Outputs returned to the host by such a session. */
  toHost: number;
}

const bytesOf = (t: HostTensor) => (t.data as ArrayBufferView).byteLength;

/** What a session profiles its first run for. */
interface Profiled {
  readonly dir: string;
  readonly name: string;
  readonly report: (placement: Placement) => void;
}

const ORT_TYPE: Partial<Record<DType, ort.Tensor.Type>> = {
  float32: "float32",
  float64: "float64",
  int64: "int64",
  int32: "int32",
  bool: "bool",
  uint8: "uint8",
  float16: "float16",
};

/*
 * float16 tensors travel as their bits in a Uint16Array. Where the runtime has a global Float16Array (Deno does,
 * Node.js 22 does not), onnxruntime-common wraps those bits in one, which onnxruntime-node's native side cannot
 * read (it sees no bytes: "not enough space: expected 64, got 0"); so an input's data is handed over as the
 * Uint16Array, and an output's Float16Array is viewed as bits again.
 */

function toOrt(t: HostTensor): ort.Tensor {
  const type = ORT_TYPE[t.dtype];
  if (!type) throw new Error(`onnxruntime-node cannot take ${t.dtype} tensors as inputs`);
  const tensor = new ort.Tensor(type, t.data as ort.Tensor.DataType, t.dims);
  if (t.dtype === "float16") Object.defineProperty(tensor, "data", { value: t.data });
  return tensor;
}

function fromOrt(t: ort.Tensor): HostTensor | DeviceTensor {
  if (t.location === "gpu-buffer") return new DeviceTensor(t.type as DType, t.dims, t);
  const d = t.data as ArrayBufferView & { length: number };
  const data = t.type === "float16" && !(d instanceof Uint16Array)
    ? new Uint16Array(d.buffer, d.byteOffset, d.length)
    : d as HostArray;
  return { dtype: t.type as DType, dims: t.dims, data };
}

/** A loaded model. */
export class Session {
  readonly #session: ort.InferenceSession;
  #profiled?: Profiled;
  readonly #onDevice: boolean;
  readonly #holdsDeviceTensors: boolean;
  /** What the session's runs moved between host and device memory (zero on the CPU). */
  readonly traffic: Traffic = { runs: 0, toDevice: 0, toHost: 0 };

  /**
   * Wraps an onnxruntime session; `profiled` when it was created profiling (see {@link createSession}),
   * `onDevice` when its first provider is not the CPU (its host feeds and outputs then count as traffic),
   * `holdsDeviceTensors` when it takes and leaves {@link DeviceTensor}s (its first provider is WebGPU).
   */
  constructor(
    session: ort.InferenceSession,
    profiled?: Profiled,
    onDevice = false,
    holdsDeviceTensors = false,
  ) {
    this.#session = session;
    this.#profiled = profiled;
    this.#onDevice = onDevice;
    this.#holdsDeviceTensors = holdsDeviceTensors;
  }

  /**
   * Inputs fed unchanged on every run (an adapter's LoRA weights during generation), placed where this session's
   * runs read them: on a session that holds device tensors (WebGPU) each is copied to device memory once (counted
   * in {@link traffic}) and comes back as a {@link DeviceTensor}, which the caller frees with `dispose` when done;
   * elsewhere they are returned as they are, and cross with every run.
   */
  async resident(tensors: Readonly<Record<string, HostTensor>>): Promise<Record<string, Tensor>> {
    if (!this.#holdsDeviceTensors) return { ...tensors };
    const placed: Record<string, Tensor> = {};
    try {
      for (const [name, t] of Object.entries(tensors)) {
        placed[name] = await upload(t);
        this.traffic.toDevice += bytesOf(t);
      }
    } catch (e) {
      for (const t of Object.values(placed)) (t as DeviceTensor).dispose();
      throw e;
    }
    return placed;
  }

  /** Names of the model's inputs. */
  get inputNames(): readonly string[] {
    return this.#session.inputNames;
  }

  /** Names of the model's outputs. */
  get outputNames(): readonly string[] {
    return this.#session.outputNames;
  }

  /** Runs the model; returns the requested outputs (default: all), all in host memory. */
  async run(
    feeds: Readonly<Record<string, Tensor>>,
    fetches?: string[],
  ): Promise<Record<string, HostTensor>> {
    const out = await this.runOnDevice(feeds, fetches);
    const onDevice = Object.keys(out).filter((k) => out[k] instanceof DeviceTensor);
    if (onDevice.length) {
      throw new Error(`outputs ${onDevice.join(", ")} are in device memory: use runOnDevice, then download`);
    }
    return out as Record<string, HostTensor>;
  }

  /** Runs the model; outputs named in {@link SessionOptions.deviceOutputs} stay in device memory. */
  async runOnDevice(
    feeds: Readonly<Record<string, Tensor>>,
    fetches?: string[],
  ): Promise<Record<string, Tensor>> {
    const missing = this.#session.inputNames.filter((n) => !(n in feeds));
    if (missing.length) throw new Error(`missing inputs: ${missing.join(", ")}`);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      if (t instanceof DeviceTensor) ortFeeds[name] = t.ort;
      else {
        ortFeeds[name] = toOrt(t);
        if (this.#onDevice) this.traffic.toDevice += bytesOf(t);
      }
    }
    const out = fetches ? await this.#session.run(ortFeeds, fetches) : await this.#session.run(ortFeeds);
    if (this.#profiled) await this.#reportPlacement(this.#profiled);
    const result: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(out)) {
      const r = result[name] = fromOrt(t);
      if (this.#onDevice && !(r instanceof DeviceTensor)) this.traffic.toHost += bytesOf(r);
    }
    this.traffic.runs++;
    return result;
  }

  /** Frees the native session. */
  async release(): Promise<void> {
    if (this.#profiled) {
      this.#session.endProfiling();
      await Deno.remove(this.#profiled.dir, { recursive: true });
      this.#profiled = undefined;
    }
    await this.#session.release();
  }

  async #reportPlacement(profiled: Profiled): Promise<void> {
    this.#profiled = undefined;
    this.#session.endProfiling();
    try {
      const events = [];
      for await (const entry of Deno.readDir(profiled.dir)) {
        for (const e of JSON.parse(await Deno.readTextFile(`${profiled.dir}/${entry.name}`))) events.push(e);
      }
      profiled.report(placementFromProfile(profiled.name, events));
    } finally {
      await Deno.remove(profiled.dir, { recursive: true });
    }
  }
}

/** Loads a model from bytes or from a file path (external data then resolves beside the file). */
export async function createSession(
  model: Uint8Array | string,
  options: SessionOptions = {},
): Promise<Session> {
  const opts: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: options.threads ?? navigator.hardwareConcurrency,
    interOpNumThreads: 1,
    graphOptimizationLevel: options.optimization ?? "all",
    executionProviders: options.providers ?? ["cpu"],
    enableMemPattern: options.memoryPattern ?? false,
  };
  let profiled: Profiled | undefined;
  if (options.onPlacement) {
    const dir = await Deno.makeTempDir({ prefix: "flexora-profile-" });
    profiled = { dir, name: options.name ?? "model", report: options.onPlacement };
    opts.enableProfiling = true;
    opts.profileFilePrefix = `${dir}/profile`;
  }
  const config: Record<string, string> = {};
  if (options.externalDataFolder !== undefined) {
    config.model_external_initializers_file_folder_path = options.externalDataFolder;
  }
  if (!options.prepack) config.disable_prepacking = "1";
  opts.extra = { session: config };
  if (!options.foldConstants) opts.extra.optimization = { disable_specified_optimizers: "ConstantFolding" };
  if (options.externalData) {
    opts.externalData = Object.entries(options.externalData).map(([path, data]) => ({ path, data }));
  }
  const first = opts.executionProviders![0];
  if (options.deviceOutputs?.length && first === "webgpu") {
    opts.preferredOutputLocation = Object.fromEntries(options.deviceOutputs.map((n) => [n, "gpu-buffer"]));
  }
  const session = typeof model === "string"
    ? await ort.InferenceSession.create(model, opts)
    : await ort.InferenceSession.create(model, opts);
  return new Session(session, profiled, first !== "cpu", first === "webgpu");
}

/** Identity sessions on WebGPU, by dtype and rank: what reads device tensors back, and what writes them. */
const readers = new Map<string, Promise<ort.InferenceSession>>();
const writers = new Map<string, Promise<ort.InferenceSession>>();

/** A one-node identity session on WebGPU for `dtype` tensors of rank `rank`; `toDevice`: its output stays there. */
function identitySession(
  cache: Map<string, Promise<ort.InferenceSession>>,
  dtype: DType,
  rank: number,
  toDevice: boolean,
): Promise<ort.InferenceSession> {
  const key = `${dtype}/${rank}`;
  let session = cache.get(key);
  if (!session) {
    const g = new Graph({ name: toDevice ? "upload" : "download" });
    const bytes = serialize(g, {
      y: identity(g.input("x", dtype, [...Array(rank).keys()].map((i) => `d${i}`))),
    });
    session = ort.InferenceSession.create(bytes, {
      executionProviders: ["webgpu"],
      ...(toDevice ? { preferredOutputLocation: { y: "gpu-buffer" } } : {}),
    });
    cache.set(key, session);
  }
  return session;
}

/**
 * A host tensor copied to WebGPU device memory (through a one-node session there), for sessions that hold device
 * tensors; see {@link Session.resident}.
 */
export async function upload(t: HostTensor): Promise<DeviceTensor> {
  const { y } = await (await identitySession(writers, t.dtype, t.dims.length, true)).run({ x: toOrt(t) });
  const placed = fromOrt(y);
  if (!(placed instanceof DeviceTensor)) {
    throw new Error(`a ${t.dtype} tensor [${t.dims}] did not stay on the device`);
  }
  return placed;
}

/**
 * A tensor in host memory: a host tensor as it is, a device tensor copied back (through a one-node session on
 * the same device).
 */
export async function download(t: Tensor): Promise<HostTensor> {
  if (!(t instanceof DeviceTensor)) return t;
  const reader = identitySession(readers, t.dtype, t.dims.length, false);
  const { y } = await (await reader).run({ x: t.ort });
  return fromOrt(y) as HostTensor;
}

/**
 * The safetensors format: an 8-byte little-endian header length N, N bytes of JSON header
 * (`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`), then the data.
 * Offsets in the header are relative to the data section (byte 8 + N); {@link TensorInfo} carries absolute
 * ones. Every reader validates the header first; errors name the file and what was wrong.
 *
 * @example
 * ```ts
 * import { readHeader, readTensorF32, writeSafetensors } from "./safetensors.ts";
 * const path = `${await Deno.makeTempDir()}/model.safetensors`;
 * await writeSafetensors(path, [{ name: "w", dtype: "BF16", shape: [2], data: new Float32Array([1, -2]) }]);
 * const [w] = (await readHeader(path)).tensors;
 * if ((await readTensorF32(w)).join() !== "1,-2") throw new Error("round trip");
 * ```
 *
 * @module
 */

import { dirname, join, relative, resolve } from "node:path";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../util/float16.ts";

export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 };

/** Element types of the safetensors format. */
export type SafetensorsDType = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

// deno-fmt-ignore
const DTYPE_SIZE: Readonly<Record<SafetensorsDType, number>> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** One tensor of a safetensors file: where its bytes are and how to read them. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Absolute path of the file holding it. */
  readonly file: string;
  /** Absolute byte offset of the tensor's data within `file`. */
  readonly offset: number;
  /** Bytes. */
  readonly length: number;
}

/** A file's validated header. `tensors` are in the order of their data; `dataOffset` is 8 + N. */
export interface SafetensorsHeader {
  tensors: TensorInfo[];
  metadata: Record<string, string>;
  dataOffset: number;
}

/** Headers above this size are refused as corrupt (the reference implementation's limit). */
const MAX_HEADER_BYTES = 100_000_000;

function fail(path: string, problem: string): never {
  throw new Error(`Invalid safetensors file ${path}: ${problem}`);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

async function fileSize(path: string, what: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`Cannot read ${what} ${path}: file not found`);
    throw new Error(`Cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

/** Reads exactly `length` bytes at `offset`; a short read means the file was truncated. */
async function readBytes(path: string, offset: number, length: number): Promise<Uint8Array> {
  using file = await Deno.open(path, { read: true });
  await file.seek(offset, Deno.SeekMode.Start);
  const out = new Uint8Array(length);
  for (let got = 0; got < length;) {
    const n = await file.read(out.subarray(got));
    if (n === null) fail(path, `file ended after ${offset + got} bytes, expected ${offset + length}`);
    got += n;
  }
  return out;
}

/** Validates one header entry of the file at `path`, whose data section starts at `dataOffset`. */
function parseEntry(path: string, name: string, entry: unknown, dataOffset: number): TensorInfo {
  const bad: (problem: string) => never = (problem) => fail(path, `tensor '${name}': ${problem}`);
  if (!isRecord(entry)) bad(`entry must be an object, got ${JSON.stringify(entry)}`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_SIZE, dtype)) {
    bad(`unknown dtype ${JSON.stringify(dtype)} (expected one of ${Object.keys(DTYPE_SIZE).join(", ")})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    bad(`shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) bad(`data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
  const [begin, end] = offsets as number[];
  const expected = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_SIZE[dtype as SafetensorsDType];
  const got = end - begin;
  if (got !== expected) {
    bad(`data_offsets [${begin}, ${end}] hold ${got} bytes, ${dtype} [${shape}] needs ${expected}`);
  }
  const info = { name, dtype: dtype as SafetensorsDType, shape, file: path, offset: dataOffset + begin };
  return { ...info, length: expected };
}

/**
 * Reads and validates one file's header (does not read tensor data).
 *
 * @example
 * ```ts
 * import { readHeader, writeSafetensors } from "./safetensors.ts";
 * const path = `${await Deno.makeTempDir()}/a.safetensors`;
 * await writeSafetensors(path, [{ name: "b", dtype: "F32", shape: [3], data: new Float32Array(3) }]);
 * const { tensors, dataOffset } = await readHeader(path);
 * if (tensors[0].offset !== dataOffset || tensors[0].length !== 12) throw new Error("b is first, 12 bytes");
 * ```
 */
export async function readHeader(path: string): Promise<SafetensorsHeader> {
  const file = resolve(path);
  const size = await fileSize(file, "safetensors file");
  if (size < 8) fail(file, `file is ${size} bytes, shorter than the 8-byte header length`);
  const n = new DataView((await readBytes(file, 0, 8)).buffer).getBigUint64(0, true);
  if (n > BigInt(size - 8)) {
    fail(file, `header length ${n} is larger than the rest of the file (${size - 8} bytes)`);
  }
  if (n > MAX_HEADER_BYTES) fail(file, `header length ${n} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  const dataOffset = 8 + Number(n);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await readBytes(file, 8, Number(n))));
  } catch (e) {
    fail(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isRecord(json)) {
    fail(file, `header must be a JSON object, got ${Array.isArray(json) ? "an array" : json}`);
  }
  const { __metadata__: meta = {}, ...entries } = json;
  if (!isRecord(meta) || !Object.values(meta).every((v) => typeof v === "string")) {
    fail(file, `__metadata__ must be an object of strings, got ${JSON.stringify(meta)}`);
  }
  const tensors = Object.entries(entries).map(([name, e]) => parseEntry(file, name, e, dataOffset));
  tensors.sort((a, b) => a.offset - b.offset || a.length - b.length);
  for (const [i, t] of tensors.entries()) {
    const end = t.offset + t.length, prev = tensors[i - 1];
    if (end > size) {
      fail(file, `tensor '${t.name}' ends at byte ${end}, past the end (${size} bytes): truncated?`);
    }
    if (prev && t.offset < prev.offset + prev.length) {
      fail(file, `data of tensors '${prev.name}' and '${t.name}' overlap`);
    }
  }
  return { tensors, metadata: meta as Record<string, string>, dataOffset };
}

/** A model directory's tensors: `model.safetensors`, or shards listed by `model.safetensors.index.json`. */
export interface Checkpoint {
  readonly dir: string;
  /** Absolute paths, in a stable order (sorted for shards). */
  readonly files: readonly string[];
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /**
   * The folder onnxruntime reads the files from, and each file's location in it: the folder that holds every
   * file once symlinks are followed (`dir` itself for a plain folder; a Hugging Face cache snapshot links into
   * `../../blobs/`, and onnxruntime refuses external data that leaves its folder through a link).
   */
  readonly dataFolder: string;
  readonly locations: ReadonlyMap<string, string>;
  /** The tensor, or an Error naming the tensor and the directory. */
  get(name: string): TensorInfo;
}

async function makeCheckpoint(
  dir: string,
  files: string[],
  tensors: Map<string, TensorInfo>,
): Promise<Checkpoint> {
  const real = await Promise.all(files.map((f) => Deno.realPath(f)));
  let dataFolder = dirname(real[0]);
  while (real.some((r) => relative(dataFolder, r).startsWith("..")) && dirname(dataFolder) !== dataFolder) {
    dataFolder = dirname(dataFolder);
  }
  return {
    dir,
    files,
    tensors,
    dataFolder,
    locations: new Map(files.map((f, i) => [f, relative(dataFolder, real[i])])),
    get(name) {
      const info = tensors.get(name);
      if (!info) throw new Error(`Tensor '${name}' not found in checkpoint ${dir} (${tensors.size} tensors)`);
      return info;
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Reads an index's `weight_map` (tensor name → shard file name). */
async function readWeightMap(index: string): Promise<Record<string, string>> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(index));
  } catch (e) {
    throw new Error(`Invalid checkpoint index ${index}: not valid JSON (${(e as Error).message})`);
  }
  const map = isRecord(json) ? json.weight_map : undefined;
  if (!isRecord(map) || !Object.values(map).every((v) => typeof v === "string" && v !== "")) {
    throw new Error(
      `Invalid checkpoint index ${index}: 'weight_map' must map tensor names to shard file names`,
    );
  }
  return map as Record<string, string>;
}

/**
 * Opens a model directory (single file preferred, as Hugging Face does, then the sharded index) and validates
 * every header, and for shards that each tensor of the index's `weight_map` is in the shard it names.
 *
 * @example
 * ```ts
 * import { openCheckpoint, writeSafetensors } from "./safetensors.ts";
 * const dir = await Deno.makeTempDir();
 * await writeSafetensors(`${dir}/model.safetensors`, [{ name: "w", dtype: "F32", shape: [], data: new Float32Array(1) }]);
 * if ((await openCheckpoint(dir)).get("w").shape.length !== 0) throw new Error("a scalar");
 * ```
 */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const root = resolve(dir);
  const single = join(root, "model.safetensors"), index = join(root, "model.safetensors.index.json");
  if (await exists(single)) {
    const { tensors } = await readHeader(single);
    return await makeCheckpoint(root, [single], new Map(tensors.map((t) => [t.name, t])));
  }
  if (!(await exists(index))) {
    throw new Error(`No safetensors checkpoint in ${root}: found neither model.safetensors nor ${index}`);
  }
  const weightMap = await readWeightMap(index);
  const shards = [...new Set(Object.values(weightMap))].sort();
  const files = shards.map((s) => join(root, s));
  const headers = new Map<string, Map<string, TensorInfo>>();
  for (const [i, file] of files.entries()) {
    if (!(await exists(file))) {
      throw new Error(`Invalid checkpoint index ${index}: shard ${file} does not exist`);
    }
    headers.set(shards[i], new Map((await readHeader(file)).tensors.map((t) => [t.name, t])));
  }
  const tensors = new Map<string, TensorInfo>();
  for (const [name, shard] of Object.entries(weightMap)) {
    const info = headers.get(shard)!.get(name);
    if (!info) {
      throw new Error(`Invalid checkpoint index ${index}: tensor '${name}' is not in shard ${shard}`);
    }
    tensors.set(name, info);
  }
  return await makeCheckpoint(root, files, tensors);
}

/**
 * Reads a tensor's data converted to float32 (from F32, F16, BF16 or F64; F64 rounds).
 *
 * @example
 * ```ts
 * import { readHeader, readTensorF32, writeSafetensors } from "./safetensors.ts";
 * const path = `${await Deno.makeTempDir()}/h.safetensors`;
 * await writeSafetensors(path, [{ name: "h", dtype: "F16", shape: [1], data: new Float32Array([0.5]) }]);
 * if ((await readTensorF32((await readHeader(path)).tensors[0]))[0] !== 0.5) throw new Error("0.5 is exact");
 * ```
 */
export async function readTensorF32(info: TensorInfo): Promise<Float32Array> {
  const { name, dtype, file, offset, length } = info;
  if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16" && dtype !== "F64") {
    throw new Error(
      `Cannot read tensor '${name}' of ${file} as float32: dtype ${dtype} is not F32, F16, BF16 or F64`,
    );
  }
  const bytes = await readBytes(file, offset, length); // a fresh, aligned buffer; hosts are little-endian
  if (dtype === "F32") return new Float32Array(bytes.buffer);
  if (dtype === "F64") return Float32Array.from(new Float64Array(bytes.buffer));
  const bits = new Uint16Array(bytes.buffer);
  return dtype === "F16" ? f16ToF32(bits) : bf16ToF32(bits);
}

/** One tensor to write: float32 data stored as `dtype`. */
export interface TensorToWrite {
  name: string;
  dtype: "F32" | "F16" | "BF16";
  shape: readonly number[];
  data: Float32Array;
}

function encode(t: TensorToWrite): Uint8Array {
  const stored = t.dtype === "F32" ? t.data : t.dtype === "F16" ? f32ToF16(t.data) : f32ToBf16(t.data);
  return new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength);
}

/**
 * Writes a safetensors file atomically (a temp file in the same directory, then a rename). Tensors are stored in
 * the given order; the header is padded with spaces to a multiple of 8 bytes, as the reference implementation does.
 *
 * @example
 * ```ts
 * import { writeSafetensors } from "./safetensors.ts";
 * const path = `${await Deno.makeTempDir()}/w.safetensors`;
 * await writeSafetensors(path, [{ name: "w", dtype: "F32", shape: [2, 2], data: new Float32Array(4) }], { format: "pt" });
 * if ((await Deno.stat(path)).size % 8 !== 0) throw new Error("8 + padded header + 16 bytes");
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  const file = resolve(path);
  const bad: (problem: string) => never = (problem) => {
    throw new Error(`Cannot write safetensors file ${file}: ${problem}`);
  };
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") bad(`metadata '${k}' is not a string`);
    }
    header.__metadata__ = metadata;
  }
  const chunks: Uint8Array[] = [];
  let end = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__" || Object.hasOwn(header, t.name)) {
      bad(`tensor name '${t.name}' is reserved or repeated`);
    }
    if (!["F32", "F16", "BF16"].includes(t.dtype)) bad(`tensor '${t.name}': cannot store as ${t.dtype}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(`tensor '${t.name}': bad shape [${t.shape}]`);
    }
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== count) {
      bad(`tensor '${t.name}': shape [${t.shape}] needs ${count} values, got ${t.data.length}`);
    }
    const bytes = encode(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [end, end + bytes.length] };
    chunks.push(bytes);
    end += bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const head = new Uint8Array(8 + Math.ceil(json.length / 8) * 8).fill(0x20); // length, JSON, space padding
  head.set(json, 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(head.length - 8), true);
  const temp = join(dirname(file), `.${crypto.randomUUID()}.safetensors.tmp`);
  try {
    const out = await Deno.open(temp, { write: true, createNew: true });
    try {
      for (const chunk of [head, ...chunks]) {
        for (let done = 0; done < chunk.length;) done += await out.write(chunk.subarray(done));
      }
      await out.sync();
    } finally {
      out.close();
    }
    await Deno.rename(temp, file);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    bad((e as Error).message);
  }
}

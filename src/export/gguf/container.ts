/**
 * The GGUF container (version 3, little-endian): magic `GGUF`, version, tensor count, metadata count, the metadata
 * key/value pairs, one info record per tensor (name, dims innermost first, ggml type, data offset), zero padding
 * to the alignment (32), then each tensor's data at its aligned offset. The metadata pairs are encoded by
 * `@huggingface/gguf`'s `serializeGgufMetadata`; the tensor records and the data, which it does not write, are
 * written here. Tensors are produced one at a time while the file is written, so a model need not fit in memory.
 *
 * @example
 * ```ts
 * import { gguf } from "@huggingface/gguf";
 * import { meta, writeGguf } from "./container.ts";
 * const path = `${await Deno.makeTempDir()}/w.gguf`;
 * await writeGguf(path, { "general.name": meta.string("w") }, [
 *   { name: "w.weight", shape: [2, 3], dtype: "F32", data: () => new Float32Array([1, 2, 3, 4, 5, 6]) },
 * ]);
 * const { tensorInfos } = await gguf(path, { allowLocalFile: true });
 * if (tensorInfos[0].shape.join() !== "3,2") throw new Error("GGUF lists dims innermost first");
 * ```
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { GGMLQuantizationType, GGUFValueType, serializeGgufMetadata } from "@huggingface/gguf";
import { f32ToF16 } from "../../util/float16.ts";

/** One metadata value with its GGUF type, as `serializeGgufMetadata` takes it. */
export interface MetaValue {
  readonly value: string | number | bigint | boolean | readonly (string | number | boolean)[];
  readonly type: GGUFValueType;
  readonly subType?: GGUFValueType;
}

/** Metadata by key, in the order they are written. */
export type Metadata = Record<string, MetaValue>;

/**
 * Typed metadata values.
 *
 * @example
 * ```ts
 * import { meta } from "./container.ts";
 * if (meta.strings(["a", "b"]).subType === undefined) throw new Error("arrays carry their element type");
 * ```
 */
export const meta = {
  string: (value: string): MetaValue => ({ value, type: GGUFValueType.STRING }),
  u32: (value: number): MetaValue => ({ value, type: GGUFValueType.UINT32 }),
  i32: (value: number): MetaValue => ({ value, type: GGUFValueType.INT32 }),
  f32: (value: number): MetaValue => ({ value, type: GGUFValueType.FLOAT32 }),
  bool: (value: boolean): MetaValue => ({ value, type: GGUFValueType.BOOL }),
  strings: (value: readonly string[]): MetaValue => ({
    value,
    type: GGUFValueType.ARRAY,
    subType: GGUFValueType.STRING,
  }),
  f32s: (value: readonly number[]): MetaValue => ({
    value,
    type: GGUFValueType.ARRAY,
    subType: GGUFValueType.FLOAT32,
  }),
  i32s: (value: readonly number[]): MetaValue => ({
    value,
    type: GGUFValueType.ARRAY,
    subType: GGUFValueType.INT32,
  }),
};

/** Element types flexora writes. */
export type GgufDType = "F32" | "F16";

/** One tensor to write. */
export interface GgufTensor {
  /** llama.cpp's name, e.g. `blk.0.attn_q.weight`. */
  readonly name: string;
  /** Row-major shape as PyTorch and safetensors give it (`[out, in]`); GGUF stores it reversed. */
  readonly shape: readonly number[];
  readonly dtype: GgufDType;
  /** The values in row-major order, produced when the tensor is written. */
  readonly data: () => Float32Array | Promise<Float32Array>;
}

/** Data alignment: llama.cpp's default, so no `general.alignment` key is needed. */
export const ALIGNMENT = 32;
const BYTES: Readonly<Record<GgufDType, number>> = { F32: 4, F16: 2 };
const GGML_TYPE: Readonly<Record<GgufDType, GGMLQuantizationType>> = {
  F32: GGMLQuantizationType.F32,
  F16: GGMLQuantizationType.F16,
};
/** The largest finite F16 value. */
const F16_MAX = 65504;

const pad = (n: number) => Math.ceil(n / ALIGNMENT) * ALIGNMENT;

/** Little-endian byte builder for the tensor records. */
class Bytes {
  readonly #parts: Uint8Array[] = [];
  length = 0;
  #push(bytes: Uint8Array) {
    this.#parts.push(bytes);
    this.length += bytes.length;
  }
  u32(v: number) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.#push(b);
  }
  u64(v: number) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    this.#push(b);
  }
  string(s: string) {
    const text = new TextEncoder().encode(s);
    this.u64(text.length);
    this.#push(text);
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.#parts) out.set(p, at), at += p.length;
    return out;
  }
}

/** The stored bytes of `data` as `t.dtype`; F16 refuses values it cannot hold, naming the tensor. */
function encode(t: GgufTensor, data: Float32Array, file: string): Uint8Array {
  const count = t.shape.reduce((a, b) => a * b, 1);
  if (data.length !== count) {
    throw new Error(
      `Cannot write ${file}: tensor '${t.name}' of shape [${t.shape}] needs ${count} values, got ${data.length}`,
    );
  }
  if (t.dtype === "F32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const bad = data.findIndex((x) => !(Math.abs(x) <= F16_MAX));
  if (bad >= 0) {
    throw new Error(
      `Cannot write ${file}: tensor '${t.name}' holds ${data[bad]} at index ${bad}, which F16 cannot ` +
        `represent (largest ±${F16_MAX}); export it as F32`,
    );
  }
  const half = f32ToF16(data);
  return new Uint8Array(half.buffer, half.byteOffset, half.byteLength);
}

/** Header bytes (everything before the data) and each tensor's offset into the data section. */
function header(metadata: Metadata, tensors: readonly GgufTensor[]): { head: Uint8Array; offsets: number[] } {
  const kv = serializeGgufMetadata(
    {
      version: { value: 3, type: GGUFValueType.UINT32 },
      tensor_count: { value: BigInt(tensors.length), type: GGUFValueType.UINT64 },
      kv_count: { value: BigInt(Object.keys(metadata).length), type: GGUFValueType.UINT64 },
      ...metadata,
    } as Parameters<typeof serializeGgufMetadata>[0],
    { alignment: 1 },
  ); // unpadded: tensor records follow
  const infos = new Bytes(), offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    infos.string(t.name);
    infos.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) infos.u64(d);
    infos.u32(GGML_TYPE[t.dtype]);
    infos.u64(offset);
    offsets.push(offset);
    offset = pad(offset + t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype]);
  }
  const head = new Uint8Array(pad(kv.length + infos.length));
  head.set(kv);
  head.set(infos.concat(), kv.length);
  return { head, offsets };
}

/**
 * Writes a GGUF file atomically (a temporary file in the same folder, renamed once complete). Tensor names must
 * be unique; every error names the file and the tensor.
 */
export async function writeGguf(
  path: string,
  metadata: Metadata,
  tensors: readonly GgufTensor[],
): Promise<{ bytes: number }> {
  const file = resolve(path);
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new Error(`Cannot write ${file}: tensor '${t.name}' is listed twice`);
    seen.add(t.name);
  }
  const { head, offsets } = header(metadata, tensors);
  const temp = join(dirname(file), `.${crypto.randomUUID()}.gguf.tmp`);
  let written = 0;
  try {
    using out = await Deno.open(temp, { write: true, createNew: true });
    const write = async (bytes: Uint8Array) => {
      for (let done = 0; done < bytes.length;) done += await out.write(bytes.subarray(done));
      written += bytes.length;
    };
    await write(head);
    for (const [i, t] of tensors.entries()) {
      await write(new Uint8Array(head.length + offsets[i] - written)); // alignment padding
      await write(encode(t, await t.data(), file));
    }
    await out.sync();
    await Deno.rename(temp, file);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
  return { bytes: written };
}

/**
 * GGUF files read back with `@huggingface/gguf` (an independent parser), plus the tensor data it does not read.
 *
 * @module
 */

import { GGMLQuantizationType, gguf } from "@huggingface/gguf";
import { f16ToF32 } from "../../src/util/float16.ts";

/** A parsed GGUF file: metadata by key, tensors by name (shape innermost first, as GGUF stores it). */
export interface ReadGguf {
  readonly metadata: Record<string, unknown>;
  readonly tensors: Map<string, { shape: number[]; dtype: "F32" | "F16"; offset: number }>;
  /** A tensor's values as float32, in row-major order. */
  data(name: string): Promise<Float32Array>;
}

/** Parses `path`. */
export async function readGguf(path: string): Promise<ReadGguf> {
  const parsed = await gguf(path, { allowLocalFile: true });
  const start = Number(parsed.tensorDataOffset);
  const tensors = new Map(parsed.tensorInfos.map((t) => {
    const dtype = t.dtype === GGMLQuantizationType.F32
      ? "F32"
      : t.dtype === GGMLQuantizationType.F16
      ? "F16"
      : null;
    if (!dtype) throw new Error(`${path}: tensor ${t.name} has ggml type ${t.dtype}`);
    return [t.name, { shape: t.shape.map(Number), dtype, offset: start + Number(t.offset) }] as const;
  }));
  const bytes = await Deno.readFile(path);
  return {
    metadata: parsed.metadata as Record<string, unknown>,
    tensors,
    data(name) {
      const t = tensors.get(name);
      if (!t) return Promise.reject(new Error(`${path}: no tensor ${name}`));
      const count = t.shape.reduce((a, b) => a * b, 1);
      const size = t.dtype === "F32" ? 4 : 2;
      const copy = bytes.slice(t.offset, t.offset + count * size);
      return Promise.resolve(
        t.dtype === "F32" ? new Float32Array(copy.buffer) : f16ToF32(new Uint16Array(copy.buffer)),
      );
    },
  };
}

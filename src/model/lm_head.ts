/**
 * The LM head's two products with its weight W [V, D] as stored: the logits h · Wᵀ and the backward's
 * dLogits · W. A weight stored in the compute type is used as it is. A weight stored in another type (the
 * 16-bit base weights of `--base-dtype`) is never cast whole: each product runs over vocabulary slices of W, each
 * slice cast right before its product and only once the previous slice's product is computed ({@link rowsAfter}),
 * so one slice's wide copy is live at a time instead of the whole table's (a 1B model's tied embedding, 32000 ×
 * 2048, is 250 MiB in float32), as the embedding's `Gather` casts only the rows it picks. A backward casts the
 * slices again instead of keeping the forward's.
 *
 * Legend: N tokens, D width, V vocab, S rows of a slice.
 *
 * @module
 */

import { add, cast, concat, matmul, rowsAfter, slice, transpose } from "../graph/build.ts";
import type { Value } from "../graph/graph.ts";

/** Rows of a weight stored in another type cast at a time: a [4096, D] slice, 32 MiB of float32 at D = 2048. */
export const DEFAULT_HEAD_SLICE = 4096;

/** Options of {@link headLogits} and {@link headBackward}. */
export interface HeadSliceOptions {
  /** Rows of W per slice when W is stored in another type (default {@link DEFAULT_HEAD_SLICE}). */
  rows?: number;
  /** The first slice is cast once this is computed (default: the product's input). */
  after?: Value;
}

/**
 * Logits h [..., D] · Wᵀ → [..., V] in h's type, from W [V, D] as stored: one product when W is in h's type,
 * else one per vocabulary slice, each with its own cast of the slice, joined along the last axis.
 */
export function headLogits(h: Value, weight: Value, options: HeadSliceOptions = {}): Value {
  if (weight.dtype === h.dtype) return matmul(h, transpose(weight)); // [..., V]
  const parts: Value[] = [];
  for (const [start, end] of sliceBounds(weight, options.rows)) {
    const w = cast(rowsAfter(weight, start, end, parts.at(-1) ?? options.after ?? h), h.dtype); // [S, D]
    parts.push(matmul(h, transpose(w))); // [..., S]
  }
  return parts.length === 1 ? parts[0] : concat(parts, -1); // [..., V]
}

/**
 * The hidden states' gradient dLogits [N, V] · W → [N, D] in dLogits' type, from W [V, D] as stored: one product
 * when W is in that type, else the sum over vocabulary slices of dLogits[:, slice] · W[slice], each slice cast
 * again (not the forward's cast kept alive), once the previous slice's product is added.
 */
export function headBackward(dLogits: Value, weight: Value, options: HeadSliceOptions = {}): Value {
  if (weight.dtype === dLogits.dtype) return matmul(dLogits, weight); // [N, D]
  let d: Value | undefined;
  for (const [start, end] of sliceBounds(weight, options.rows)) {
    const w = cast(rowsAfter(weight, start, end, d ?? options.after ?? dLogits), dLogits.dtype); // [S, D]
    const p = matmul(slice(dLogits, [start], [end], [-1]), w); // [N, D]
    d = d ? add(d, p) : p;
  }
  return d!;
}

/** [start, end) of each slice of `rows` rows of weight [V, D], the last one shorter. */
function sliceBounds(weight: Value, rows = DEFAULT_HEAD_SLICE): [number, number][] {
  if (!Number.isInteger(rows) || rows <= 0) {
    throw new Error(`'headSlice' must be a positive integer, got ${rows}`);
  }
  const V = Number(weight.shape[0]);
  return [...Array(Math.ceil(V / rows)).keys()].map((j) => [j * rows, Math.min(V, (j + 1) * rows)]);
}

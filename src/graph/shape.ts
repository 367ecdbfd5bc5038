/**
 * Static shapes with symbolic dimensions.
 *
 * A dimension is a number or a symbol such as `"B"` or `"T"`. A product of symbols is written `"B*T"` (what a
 * flattening reshape produces). Symbols never broadcast: only a literal 1 does, so the axes that backward must
 * sum over are known when the graph is built.
 *
 * @module
 */

/** One dimension: a size, or a symbol bound when the graph runs. */
export type Dim = number | string;

/** A static shape. */
export type Shape = readonly Dim[];

/** Thrown by shape inference; the graph builder adds the node's name and inputs. */
export class ShapeError extends Error {
  override name = "ShapeError";
}

/** Formats a shape as `[B,T,64]`. */
export function formatShape(shape: Shape): string {
  return `[${shape.join(",")}]`;
}

/** True when two dims are statically equal. */
export function sameDim(a: Dim, b: Dim): boolean {
  return a === b;
}

/** True when two shapes are statically equal. */
export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => sameDim(d, b[i]));
}

/** Numpy-style broadcast of several shapes; a symbol broadcasts only against 1 or itself. */
export function broadcastShapes(...shapes: Shape[]): Dim[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let dim: Dim = 1;
    for (const s of shapes) {
      const d = s[s.length - rank + i] ?? 1;
      if (d === 1 || d === dim) continue;
      if (dim !== 1) {
        throw new ShapeError(`cannot broadcast shapes ${shapes.map(formatShape).join(" and ")} at axis ${i}`);
      }
      dim = d;
    }
    out.push(dim);
  }
  return out;
}

/** Normalizes a possibly negative axis against a rank, with a clear error when out of range. */
export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new ShapeError(`axis ${axis} is out of range for rank ${rank}`);
  }
  return a;
}

/** Symbolic atoms of a dim: `"B*T"` → `["B", "T"]`, `4` → `[]`. */
export function atoms(dim: Dim): string[] {
  return typeof dim === "number" ? [] : dim.split("*");
}

/** The product of dims, folding numbers and joining symbols: `["B", "T"]` → `"B*T"`, `[2, 3]` → `6`. */
export function productDim(dims: Shape): Dim {
  let n = 1;
  const syms: string[] = [];
  for (const d of dims) {
    if (typeof d === "number") n *= d;
    else syms.push(...atoms(d));
  }
  if (syms.length === 0) return n;
  if (n === 0) return 0;
  return n === 1 ? syms.join("*") : [String(n), ...syms].join("*");
}

/** Element-count signature: numeric product and sorted symbol atoms. Two shapes hold as many elements iff equal. */
function countSignature(shape: Shape): string {
  let n = 1;
  const syms: string[] = [];
  for (const d of shape) {
    for (const a of typeof d === "number" ? [] : atoms(d)) {
      if (/^\d+$/.test(a)) n *= Number(a);
      else syms.push(a);
    }
    if (typeof d === "number") n *= d;
  }
  return `${n}|${syms.sort().join("*")}`;
}

/** True when two shapes statically hold the same number of elements. */
export function sameCount(a: Shape, b: Shape): boolean {
  return countSignature(a) === countSignature(b);
}

/** The number of elements of a fully numeric shape; throws on a symbolic one. */
export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== "number") throw new ShapeError(`shape ${formatShape(shape)} is symbolic`);
    n *= d;
  }
  return n;
}

/**
 * Element types a graph value may have, and their ONNX codes.
 *
 * @module
 */

import { f32ToBf16, f32ToF16 } from "../util/float16.ts";

/** Floating-point element types. */
export type FloatDType = "float32" | "float64" | "float16" | "bfloat16";

/**
 * The types a graph computes in: `float32`, `float64` (gradient checks), or `float16` for mixed precision, where
 * what needs range or precision stays in {@link wideFloat} of it. bfloat16 appears only in stored weights.
 */
export type ComputeFloat = "float32" | "float64" | "float16";

/** Every element type a graph value may carry. */
export type DType = FloatDType | "int64" | "int32" | "bool" | "uint8";

/** ONNX `TensorProto.DataType` codes. */
export const ONNX_DTYPE: Readonly<Record<DType, number>> = {
  float32: 1,
  uint8: 2,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  bfloat16: 16,
};

/** Bytes per element. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  float32: 4,
  uint8: 1,
  int32: 4,
  int64: 8,
  bool: 1,
  float16: 2,
  float64: 8,
  bfloat16: 2,
};

/** True for the floating-point element types. */
export function isFloat(dtype: DType): dtype is FloatDType {
  return dtype === "float32" || dtype === "float64" || dtype === "float16" || dtype === "bfloat16";
}

/**
 * The type mixed precision keeps wide when computing in `dtype`: float32 for the 16-bit types (master weights,
 * optimizer state, normalisation statistics, softmax, losses), else `dtype` itself.
 *
 * @example
 * ```ts
 * import { wideFloat } from "./dtype.ts";
 * if (wideFloat("float16") !== "float32" || wideFloat("float64") !== "float64") throw new Error("wide types");
 * ```
 */
export function wideFloat(dtype: FloatDType): "float32" | "float64" {
  return dtype === "float64" ? "float64" : "float32";
}

/** Host array type holding elements of a dtype. 16-bit floats travel as their raw bits. */
export type HostArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;

/** Allocates a host array for `n` elements of `dtype`. */
export function allocate(dtype: DType, n: number): HostArray {
  switch (dtype) {
    case "float32":
      return new Float32Array(n);
    case "float64":
      return new Float64Array(n);
    case "int64":
      return new BigInt64Array(n);
    case "int32":
      return new Int32Array(n);
    case "float16":
    case "bfloat16":
      return new Uint16Array(n);
    case "bool":
    case "uint8":
      return new Uint8Array(n);
  }
}

/**
 * Converts plain numbers to the host array of `dtype`; 16-bit floats become their raw bits, rounded to nearest
 * even (through float32, which is exact: float32's 24 significand bits are at least 2·11 + 2, so rounding twice
 * gives the correctly rounded result).
 *
 * @example
 * ```ts
 * import { toHostArray } from "./dtype.ts";
 * const a = toHostArray("int64", [1, 2]);
 * if (a[1] !== 2n) throw new Error("expected 2n");
 * if (toHostArray("float16", [1, -2])[1] !== 0xc000) throw new Error("-2 is 0xc000 in float16");
 * ```
 */
export function toHostArray(dtype: DType, values: ArrayLike<number>): HostArray {
  if (dtype === "float16") return f32ToF16(Float32Array.from(values));
  if (dtype === "bfloat16") return f32ToBf16(Float32Array.from(values));
  const out = allocate(dtype, values.length);
  if (out instanceof BigInt64Array) {
    for (let i = 0; i < values.length; i++) out[i] = BigInt(Math.trunc(values[i]));
  } else {
    for (let i = 0; i < values.length; i++) out[i] = values[i];
  }
  return out;
}

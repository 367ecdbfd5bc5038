/**
 * Element types a graph value may have, and their ONNX codes.
 *
 * @module
 */

/** Floating-point element types. Graphs compute in `float32` or `float64`; 16-bit types appear in stored weights. */
export type FloatDType = "float32" | "float64" | "float16" | "bfloat16";

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
 * Converts plain numbers to the host array of `dtype` (float32/float64/int64/int32/bool/uint8).
 *
 * @example
 * ```ts
 * import { toHostArray } from "./dtype.ts";
 * const a = toHostArray("int64", [1, 2]);
 * if (a[1] !== 2n) throw new Error("expected 2n");
 * ```
 */
export function toHostArray(dtype: DType, values: ArrayLike<number>): HostArray {
  if (dtype === "float16" || dtype === "bfloat16") {
    throw new Error(`Cannot convert numbers to ${dtype}: 16-bit floats are read from weight files only`);
  }
  const out = allocate(dtype, values.length);
  if (out instanceof BigInt64Array) {
    for (let i = 0; i < values.length; i++) out[i] = BigInt(Math.trunc(values[i]));
  } else {
    for (let i = 0; i < values.length; i++) out[i] = values[i];
  }
  return out;
}

/**
 * Conversions between float32 and the two 16-bit float formats found in weight files, working on raw bits:
 * IEEE 754 half precision (`F16`: 1 sign, 5 exponent, 10 mantissa bits) and bfloat16 (`BF16`: the top 16 bits
 * of a float32). Widening is exact; narrowing rounds to nearest, ties to even, and keeps NaNs NaN.
 *
 * @example
 * ```ts
 * import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./float16.ts";
 * const x = new Float32Array([1, -2.5, 65504]);
 * if (f16ToF32(f32ToF16(x)).join() !== "1,-2.5,65504") throw new Error("exact in F16");
 * if (bf16ToF32(f32ToBf16(x))[1] !== -2.5) throw new Error("exact in BF16");
 * ```
 *
 * @module
 */

/** The bits of each float32 (a view, not a copy). */
function bitsOf(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

/**
 * Widens bfloat16 bits to float32 (exact: the bits become the top half of a float32).
 *
 * @example
 * ```ts
 * import { bf16ToF32 } from "./float16.ts";
 * if (bf16ToF32(new Uint16Array([0x3f80, 0xc000]))[1] !== -2) throw new Error("0xc000 is -2");
 * ```
 */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = bitsOf(out);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return out;
}

/**
 * Narrows float32 to bfloat16 bits, rounding to nearest even; NaN stays NaN (quietened, sign kept).
 *
 * @example
 * ```ts
 * import { f32ToBf16 } from "./float16.ts";
 * if (f32ToBf16(new Float32Array([1]))[0] !== 0x3f80) throw new Error("1 is 0x3f80");
 * ```
 */
export function f32ToBf16(x: Float32Array): Uint16Array {
  const u = bitsOf(x);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = u[i];
    if ((b & 0x7fffffff) > 0x7f800000) out[i] = (b >>> 16) | 0x0040;
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16; // overflow rounds up to the infinity pattern
  }
  return out;
}

/**
 * Widens IEEE half-precision bits to float32 (exact, including subnormals, infinities and NaN payloads).
 *
 * @example
 * ```ts
 * import { f16ToF32 } from "./float16.ts";
 * if (f16ToF32(new Uint16Array([0x0001]))[0] !== 2 ** -24) throw new Error("smallest subnormal");
 * ```
 */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = bitsOf(out);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i], sign = (h & 0x8000) << 16, exp = (h >>> 10) & 0x1f, mant = h & 0x3ff;
    if (exp === 0) out[i] = (sign ? -1 : 1) * mant * 2 ** -24; // zero or subnormal: exact in float32
    else if (exp === 31) u[i] = sign | 0x7f800000 | (mant << 13);
    else u[i] = sign | ((exp + 112) << 23) | (mant << 13);
  }
  return out;
}

/**
 * Narrows float32 to IEEE half-precision bits, rounding to nearest even (to subnormals and to ±inf as needed);
 * NaN stays NaN (quietened, sign kept).
 *
 * @example
 * ```ts
 * import { f32ToF16 } from "./float16.ts";
 * if (f32ToF16(new Float32Array([65520]))[0] !== 0x7c00) throw new Error("65520 rounds to inf");
 * ```
 */
export function f32ToF16(x: Float32Array): Uint16Array {
  const u = bitsOf(x);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = u[i], sign = (b >>> 16) & 0x8000, a = b & 0x7fffffff;
    const e = (a >>> 23) - 127, mant = a & 0x7fffff;
    if (a > 0x7f800000) out[i] = sign | 0x7e00 | (mant >>> 13);
    else if (e > 15) out[i] = sign | 0x7c00; // includes +-inf
    else if (e >= -14) {
      // normal: keep 10 of 23 mantissa bits; a carry out of the mantissa bumps the exponent (up to inf)
      let h = ((e + 15) << 10) | (mant >>> 13);
      const rest = mant & 0x1fff;
      if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
      out[i] = sign | h;
    } else if (e >= -25) {
      // subnormal in F16: the value in units of 2^-24 is m * 2^(e+1), m the 24-bit significand
      const m = mant | 0x800000, shift = -(e + 1);
      let h = m >>> shift;
      const rest = m & ((1 << shift) - 1), half = 1 << (shift - 1);
      if (rest > half || (rest === half && (h & 1))) h++;
      out[i] = sign | h;
    } else out[i] = sign; // below half the smallest subnormal: a signed zero
  }
  return out;
}

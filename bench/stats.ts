/**
 * Timing helpers for benchmarks: medians over repeated runs after warmup.
 *
 * @module
 */

/** Median of numbers. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs `fn` `warmup` times, then `runs` times; returns the median and all timed durations in seconds. */
export async function timeIt(
  fn: () => Promise<unknown>,
  runs = 7,
  warmup = 2,
): Promise<{ median: number; all: number[] }> {
  for (let i = 0; i < warmup; i++) await fn();
  const all: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    all.push((performance.now() - t0) / 1000);
  }
  return { median: median(all), all };
}

/** Two-sided 95 % quantiles of Student's t, t(0.975, df), for df = 1 … 30. */
const T975 = [
  12.706,
  4.303,
  3.182,
  2.776,
  2.571,
  2.447,
  2.365,
  2.306,
  2.262,
  2.228,
  2.201,
  2.179,
  2.16,
  2.145,
  2.131,
  2.12,
  2.11,
  2.101,
  2.093,
  2.086,
  2.08,
  2.074,
  2.069,
  2.064,
  2.06,
  2.056,
  2.052,
  2.048,
  2.045,
  2.042,
];

/** t(0.975, df): the table up to 30 degrees of freedom, past it the normal quantile with Cornish–Fisher's first term. */
export function tQuantile975(df: number): number {
  if (!(Number.isInteger(df) && df >= 1)) {
    throw new Error(`degrees of freedom must be a positive integer, got ${df}`);
  }
  if (df <= T975.length) return T975[df - 1];
  const z = 1.959964;
  return z + (z ** 3 + z) / (4 * df);
}

/** A mean and its 95 % t-interval: mean ± half; `half` is NaN for a single value (no spread to estimate). */
export interface Interval {
  readonly n: number;
  readonly mean: number;
  readonly half: number;
  readonly lo: number;
  readonly hi: number;
}

/** The mean of `xs` and its two-sided 95 % Student t-interval, mean ± t(0.975, n−1) · s / √n. */
export function tInterval(xs: readonly number[]): Interval {
  const n = xs.length;
  if (n === 0) throw new Error("a t-interval needs at least one value, got none");
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { n, mean, half: NaN, lo: NaN, hi: NaN };
  const variance = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  const half = tQuantile975(n - 1) * Math.sqrt(variance / n);
  return { n, mean, half, lo: mean - half, hi: mean + half };
}

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

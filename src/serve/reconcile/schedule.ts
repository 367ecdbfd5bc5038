/**
 * When each replica is reconciled: every interval, spread by jitter, and backed off exponentially while it keeps
 * failing. Time comes from a {@link Clock}, so tests can drive the loop without waiting.
 *
 * @module
 */

/** Settings of the reconcile loop. */
export interface ReconcileSettings {
  /** Time between two passes over a healthy replica (default 15 000 ms). */
  readonly intervalMs: number;
  /** Each wait is drawn uniformly from `interval × [1 − jitter, 1 + jitter]` (default 0.1), so replicas drift apart. */
  readonly jitter: number;
  /**
   * Longest wait after failures (default 300 000 ms, or the interval when that is longer); the k-th failure in a
   * row waits `interval × 2^(k−1)`.
   */
  readonly maxBackoffMs: number;
  /** A pass over one replica is abandoned after this long (default 60 000 ms), so a hung server holds nothing. */
  readonly passTimeoutMs: number;
}

/** The defaults. */
export const DEFAULT_RECONCILE: ReconcileSettings = {
  intervalMs: 15_000,
  jitter: 0.1,
  maxBackoffMs: 300_000,
  passTimeoutMs: 60_000,
};

/**
 * The settings with defaults filled in; messages name the setting and the value.
 *
 * @example
 * ```ts
 * import { reconcileSettings } from "./schedule.ts";
 * if (reconcileSettings({ intervalMs: 500 }).maxBackoffMs !== 300_000) throw new Error("default");
 * try {
 *   reconcileSettings({ jitter: 1 });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!/'reconcile.jitter' must be/.test((e as Error).message)) throw e;
 * }
 * ```
 */
export function reconcileSettings(given: Partial<ReconcileSettings> = {}): ReconcileSettings {
  const defaults = {
    ...DEFAULT_RECONCILE,
    maxBackoffMs: Math.max(DEFAULT_RECONCILE.maxBackoffMs, given.intervalMs ?? 0),
  };
  const s = { ...defaults, ...given };
  const bad = (field: string, rule: string, v: unknown) =>
    new Error(`Cannot start the sidecar: 'reconcile.${field}' must be ${rule}, got ${v}`);
  for (const field of ["intervalMs", "maxBackoffMs", "passTimeoutMs"] as const) {
    if (!(Number.isFinite(s[field]) && s[field] > 0)) throw bad(field, "a positive number", s[field]);
  }
  if (!(s.jitter >= 0 && s.jitter < 1)) throw bad("jitter", "in [0, 1)", s.jitter);
  if (s.maxBackoffMs < s.intervalMs) {
    throw bad("maxBackoffMs", `at least 'reconcile.intervalMs' (${s.intervalMs})`, s.maxBackoffMs);
  }
  return s;
}

/**
 * Milliseconds to wait before the next pass over a replica that failed `failures` passes in a row (0: healthy);
 * `random` is uniform in [0, 1).
 *
 * @example
 * ```ts
 * import { DEFAULT_RECONCILE, nextDelay } from "./schedule.ts";
 * const s = { ...DEFAULT_RECONCILE, jitter: 0 };
 * const waits = [0, 1, 2, 3, 10].map((k) => nextDelay(s, k, 0.5));
 * if (waits.join() !== "15000,15000,30000,60000,300000") throw new Error(waits.join());
 * ```
 */
export function nextDelay(s: ReconcileSettings, failures: number, random: number): number {
  const base = failures <= 1 ? s.intervalMs : Math.min(s.intervalMs * 2 ** (failures - 1), s.maxBackoffMs);
  return base * (1 + s.jitter * (2 * random - 1));
}

/** Time and waiting, replaceable in tests. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`, or as soon as `signal` aborts (never rejects). */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  /** Uniform in [0, 1). */
  random(): number;
}

/** The real clock. */
export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    }),
  random: () => Math.random(),
};

/**
 * Learning-rate schedules: pure functions from the 0-based index of an update to its learning rate.
 * They follow Hugging Face `transformers` (`get_constant_schedule_with_warmup`, `get_linear_schedule_with_warmup`,
 * `get_cosine_schedule_with_warmup`): linear warmup from 0 to the peak over `warmupSteps`, then the decay.
 *
 * @example
 * ```ts
 * import { makeSchedule } from "./schedule.ts";
 * const lr = makeSchedule({ kind: "cosine", lr: 1e-4, totalSteps: 100, warmupSteps: 10 });
 * if (lr(10) !== 1e-4 || lr(100) !== 0) throw new Error("peak after warmup, zero at the end");
 * ```
 *
 * @module
 */

/** Learning rate of the update with 0-based index `step`. */
export type Schedule = (step: number) => number;

/** A schedule's JSON-serialisable description. */
export interface ScheduleConfig {
  kind: "constant" | "linear" | "cosine";
  /** Peak learning rate. */
  lr: number;
  /** Updates in the whole run (needed by linear and cosine). */
  totalSteps?: number;
  /** Warmup updates (default 0); `warmupRatio` of `totalSteps` when given instead. */
  warmupSteps?: number;
  warmupRatio?: number;
}

/** Fraction of the peak during warmup: step / warmupSteps. */
function warmup(step: number, warmupSteps: number): number {
  return step / Math.max(1, warmupSteps);
}

/** The peak after `warmupSteps` of linear warmup. */
export function constantSchedule(lr: number, warmupSteps = 0): Schedule {
  return (step) => (step < warmupSteps ? lr * warmup(step, warmupSteps) : lr);
}

/** Warmup, then linear decay to 0 at `totalSteps`. */
export function linearSchedule(lr: number, totalSteps: number, warmupSteps = 0): Schedule {
  return (step) => {
    if (step < warmupSteps) return lr * warmup(step, warmupSteps);
    return lr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
  };
}

/** Warmup, then half a cosine from the peak to 0 at `totalSteps`. */
export function cosineSchedule(lr: number, totalSteps: number, warmupSteps = 0): Schedule {
  return (step) => {
    if (step < warmupSteps) return lr * warmup(step, warmupSteps);
    const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
    return lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * Math.min(progress, 1))));
  };
}

/** Builds a schedule from its description, with errors that name the bad field and value. */
export function makeSchedule(config: ScheduleConfig): Schedule {
  const { kind, lr } = config;
  if (!(lr >= 0 && Number.isFinite(lr))) throw new Error(`'lr' must be a finite number >= 0, got ${lr}`);
  if (config.warmupSteps !== undefined && config.warmupRatio !== undefined) {
    throw new Error(`give 'warmupSteps' or 'warmupRatio', not both`);
  }
  if (config.warmupRatio !== undefined && !(config.warmupRatio >= 0 && config.warmupRatio <= 1)) {
    throw new Error(`'warmupRatio' must be in [0, 1], got ${config.warmupRatio}`);
  }
  const total = config.totalSteps;
  if (kind !== "constant" && !(Number.isInteger(total) && total! > 0)) {
    throw new Error(`a ${kind} schedule needs 'totalSteps' as a positive integer, got ${total}`);
  }
  if (config.warmupRatio !== undefined && total === undefined) {
    throw new Error(`'warmupRatio' needs 'totalSteps'`);
  }
  const warm = config.warmupSteps ?? Math.ceil((config.warmupRatio ?? 0) * (total ?? 0));
  if (!(Number.isInteger(warm) && warm >= 0)) {
    throw new Error(`'warmupSteps' must be an integer >= 0, got ${config.warmupSteps}`);
  }
  switch (kind) {
    case "constant":
      return constantSchedule(lr, warm);
    case "linear":
      return linearSchedule(lr, total!, warm);
    case "cosine":
      return cosineSchedule(lr, total!, warm);
    default:
      throw new Error(`unknown schedule kind '${kind}': expected constant, linear or cosine`);
  }
}

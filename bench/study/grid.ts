/**
 * The study's grid: regimes (training rows, label noise, train/test shift, learning rate, rank, epochs), methods,
 * and the cells they make, each with a key that identifies it in the results file (so a finished cell is found
 * and not run again).
 *
 * @module
 */

import { type FinetuneInput, type FinetuneOptions, resolveOptions } from "../../src/flexora/options.ts";

/** How training and test differ: not at all, by the story's name, or by the answer. */
export type Shift = "none" | "name" | "answer";

/** The methods compared. */
export const METHODS = ["flexora", "lora", "random-k", "grad-top-k"] as const;
/**
 * `flexora`: gate search, selection, retraining; `lora`: every layer; `random-k`: as many seeded random layers as
 * the flexora cell of the same task, regime, seed and options chose; `grad-top-k`: that many layers, those with
 * the largest LoRA gradient norm at initialisation (see `./heuristic.ts`).
 */
export type Method = typeof METHODS[number];

/** The setting a cell trains in. */
export interface Regime {
  /** Training rows drawn (seeded) from the task's train split (after the shift's filter). */
  readonly rows: number;
  /** Fraction of those rows whose completion is swapped for another choice (training split only). */
  readonly noise: number;
  readonly shift: Shift;
  /** Retraining learning rate. */
  readonly lr: number;
  /** LoRA rank (search and retraining). */
  readonly rank: number;
  /** Retraining epochs. */
  readonly epochs: number;
}

/** Retraining epochs for `rows` training rows when not given: about 64 updates of 8 rows, at least one epoch. */
export function defaultEpochs(rows: number): number {
  return Math.max(1, Math.round(512 / rows));
}

/** One cell: a method trained on a task in a regime with a seed, under extra options. */
export interface CellSpec {
  readonly task: string;
  readonly regime: Regime;
  readonly method: Method;
  readonly seed: number;
  /** Options merged into every method's input (as JSON text, `{}` when none). */
  readonly options: string;
  /** Options for flexora only (as JSON text); the cells whose k comes from flexora carry them too. */
  readonly flexora: string;
}

/** Whether a method's cell depends on the flexora options (flexora itself, and the methods that take its k). */
export function usesFlexora(method: Method): boolean {
  return method !== "lora";
}

/** Plain objects merged key by key (`b` wins); anything else is replaced. */
export function deepMerge<T>(a: T, b: unknown): T {
  const plain = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === "object" && !Array.isArray(v);
  if (!plain(a) || !plain(b)) return (b === undefined ? a : b) as T;
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = deepMerge(out[k], v);
  return out as T;
}

/**
 * A cell's pipeline options: the regime's (retraining lr and epochs, LoRA rank with alpha = 2·rank in search and
 * retraining, so the LoRA scale stays 2 as at the defaults), the seed, then the study's `options`, then for
 * flexora and the methods that take its k its `flexora` options.
 */
export function cellInput(spec: CellSpec): FinetuneInput {
  const r = spec.regime;
  const lora = { rank: r.rank, alpha: 2 * r.rank };
  const base: FinetuneInput = {
    seed: spec.seed,
    checkpointEvery: 0,
    search: { lora },
    retrain: { lr: r.lr, epochs: r.epochs, lora },
  };
  const merged = deepMerge(base, JSON.parse(spec.options));
  return spec.method === "lora" ? merged : deepMerge(merged, JSON.parse(spec.flexora));
}

/** The options a cell's key holds: the resolved retraining (and for all but lora the search), defaults filled in. */
export type KeyOptions = Partial<Pick<FinetuneOptions, "search" | "retrain">>;

/** {@link KeyOptions} of resolved options, as the cell's method uses them. */
export function keyOptions(
  method: Method,
  resolved: Pick<FinetuneOptions, "search" | "retrain">,
): KeyOptions {
  return usesFlexora(method)
    ? { search: resolved.search, retrain: resolved.retrain }
    : { retrain: resolved.retrain };
}

/** The pipeline's options of a planned cell, resolved with today's defaults. */
export function resolvedOptions(c: CellSpec): FinetuneOptions {
  return resolveOptions(cellInput(c));
}

/**
 * The cell's identity in the results file: every field that changes what it trains, including the resolved
 * options (so a changed default makes new cells rather than reusing ones trained under the old). `resolved`
 * defaults to the options the cell resolves to now; a stored cell passes the ones it ran with.
 */
export function cellKey(
  c: CellSpec,
  resolved: Pick<FinetuneOptions, "search" | "retrain"> = resolvedOptions(c),
): string {
  const r = c.regime;
  return JSON.stringify([
    c.task,
    r.rows,
    r.noise,
    r.shift,
    r.lr,
    r.rank,
    r.epochs,
    c.method,
    c.seed,
    c.options,
    usesFlexora(c.method) ? c.flexora : "",
    keyOptions(c.method, resolved),
  ]);
}

/** A regime in a few words: `rows 128, noise 0.2, shift name, lr 0.001, r 8, 5 ep`. */
export function regimeLabel(r: Regime): string {
  const parts = [`rows ${r.rows}`];
  if (r.noise > 0) parts.push(`noise ${r.noise}`);
  if (r.shift !== "none") parts.push(`shift ${r.shift}`);
  parts.push(`lr ${r.lr}`, `r ${r.rank}`, `${r.epochs} ep`);
  return parts.join(", ");
}

/** The axes of a grid; every combination is a regime. */
export interface GridAxes {
  readonly tasks: readonly string[];
  readonly rows: readonly number[];
  readonly noise: readonly number[];
  readonly shift: readonly Shift[];
  readonly lr: readonly number[];
  readonly rank: readonly number[];
  /** Retraining epochs; undefined: {@link defaultEpochs} of the rows. */
  readonly epochs?: number;
  readonly seeds: readonly number[];
  readonly methods: readonly Method[];
  readonly options: FinetuneInput;
  readonly flexora: FinetuneInput;
}

/** A task in a regime with a seed: the methods of one comparison, flexora (when asked for) first. */
export interface Group {
  readonly task: string;
  readonly regime: Regime;
  readonly seed: number;
  readonly cells: readonly CellSpec[];
}

/**
 * The grid's groups, seed by seed (so an interrupted run has every regime at the same seeds), then task, then
 * regime. Methods that take flexora's k pull flexora into the group.
 */
export function planGroups(axes: GridAxes): Group[] {
  for (const rows of axes.rows) {
    if (!(Number.isInteger(rows) && rows >= 1)) {
      throw new Error(`rows must be positive integers, got ${rows}`);
    }
  }
  for (const noise of axes.noise) {
    if (!(noise >= 0 && noise < 1)) throw new Error(`noise must be a fraction in [0, 1), got ${noise}`);
  }
  const methods: Method[] = METHODS.filter((m) =>
    axes.methods.includes(m) || (m === "flexora" && axes.methods.some((x) => x !== "lora"))
  );
  const options = JSON.stringify(axes.options), flexora = JSON.stringify(axes.flexora);
  const groups: Group[] = [];
  for (const seed of axes.seeds) {
    for (const task of axes.tasks) {
      for (const rows of axes.rows) {
        for (const noise of axes.noise) {
          for (const shift of axes.shift) {
            for (const lr of axes.lr) {
              for (const rank of axes.rank) {
                const regime = { rows, noise, shift, lr, rank, epochs: axes.epochs ?? defaultEpochs(rows) };
                const cells = methods.map((method) => ({ task, regime, method, seed, options, flexora }));
                groups.push({ task, regime, seed, cells });
              }
            }
          }
        }
      }
    }
  }
  return groups;
}

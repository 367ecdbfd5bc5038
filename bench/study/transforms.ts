/**
 * A regime's data: a seeded draw of training rows, label noise in that draw, and a train/test shift. Only the
 * training split is drawn from and corrupted; the shift filters validation like train (it is what training
 * sees) and test to the held-out side; test rows are never modified.
 *
 * @module
 */

import type { Example } from "../../src/data/example.ts";
import { Rng } from "../../src/util/random.ts";
import type { Shift } from "./grid.ts";

/** The splits a cell trains, validates and tests on. */
export interface Splits {
  readonly train: readonly Example[];
  readonly validation: readonly Example[];
  readonly test: readonly Example[];
}

/** The name of a story (`… named Lily. …`), the key of the `name` shift. */
function storyName(e: Example): string {
  const m = /\bnamed (\w+)/.exec(e.prompt);
  if (!m) {
    throw new Error(
      `shift 'name' needs stories with 'named X' in the prompt, got ${JSON.stringify(e.prompt)}`,
    );
  }
  return m[1];
}

/** The key a shift splits on, or undefined for no shift. */
function shiftKey(shift: Shift): ((e: Example) => string) | undefined {
  if (shift === "none") return undefined;
  return shift === "name" ? storyName : (e) => e.completion;
}

/**
 * The keys training sees under `shift`: the sorted distinct keys of train, every other one (so both sides mix
 * the alphabet), or all for no shift.
 */
export function trainKeys(train: readonly Example[], shift: Shift): Set<string> | undefined {
  const key = shiftKey(shift);
  if (!key) return undefined;
  const keys = [...new Set(train.map(key))].sort();
  if (keys.length < 4) {
    throw new Error(
      `shift '${shift}' needs at least 4 distinct keys to split, got ${keys.length}: ${keys.join(", ")}`,
    );
  }
  return new Set(keys.filter((_, i) => i % 2 === 0));
}

/** Options of {@link regimeSplits}. */
export interface RegimeData {
  readonly rows: number;
  readonly noise: number;
  readonly shift: Shift;
  readonly seed: number;
  /** Keep at most this many validation rows (the first ones). */
  readonly valRows?: number;
  /** Keep at most this many test rows (the first ones, after the shift's filter). */
  readonly testRows?: number;
}

/**
 * The regime's splits from a task's: shift filter (train and validation on the training keys, test on the
 * others), then a seeded draw of `rows` training rows, then `noise` of them given another choice as completion.
 */
export function regimeSplits(splits: Splits, r: RegimeData): Splits {
  const key = shiftKey(r.shift);
  const keys = trainKeys(splits.train, r.shift);
  const seen = (e: Example) => !key || keys!.has(key(e));
  const pool = splits.train.filter(seen);
  if (r.rows > pool.length) {
    throw new Error(
      `rows ${r.rows}: the train split has only ${pool.length} rows${key ? ` under shift '${r.shift}'` : ""}`,
    );
  }
  const rng = new Rng(r.seed);
  const train = rng.shuffle([...pool]).slice(0, r.rows);
  const noisy = withNoise(train, r.noise, new Rng(r.seed + 7919));
  const validation = splits.validation.filter(seen).slice(0, r.valRows ?? Infinity);
  const test = splits.test.filter((e) => !seen(e) || !key).slice(0, r.testRows ?? Infinity);
  if (validation.length === 0 || test.length === 0) {
    throw new Error(`shift '${r.shift}' leaves ${validation.length} validation and ${test.length} test rows`);
  }
  return { train: noisy, validation, test };
}

/** `rows` with round(noise · n) of them (seeded) answered by another of their choices. */
export function withNoise(rows: readonly Example[], noise: number, rng: Rng): Example[] {
  const out = [...rows];
  const flip = rng.shuffle([...out.keys()]).slice(0, Math.round(noise * out.length));
  for (const i of flip) {
    const e = out[i];
    if (!e.choices || e.choices.length < 2) {
      throw new Error(
        `label noise needs multiple-choice rows, got one without choices: ${JSON.stringify(e.prompt)}`,
      );
    }
    const others = e.choices.map((_, j) => j).filter((j) => e.choices![j] !== e.completion);
    const label = others[rng.int(0, others.length - 1)];
    out[i] = { ...e, completion: e.choices[label], label };
  }
  return out;
}

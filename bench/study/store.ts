/**
 * The study's results: one JSON line per finished cell in `<dir>/cells.jsonl`, appended as each cell finishes,
 * so an interrupted study loses at most the cell it was running and a rerun skips every finished one.
 *
 * @module
 */

import { join } from "node:path";
import type { FinetuneOptions } from "../../src/flexora/options.ts";
import { cellKey, type CellSpec } from "./grid.ts";

/** Format version of a cell line. */
export const CELL_FORMAT = 1;

/** Accuracy by summed choice log-likelihood, and the multiple-choice cross-entropy, over `n` rows. */
export interface Metrics {
  readonly accuracy: number;
  readonly loss: number;
  readonly n: number;
}

/** A finished cell. */
export interface CellRecord extends CellSpec {
  readonly format: typeof CELL_FORMAT;
  readonly key: string;
  readonly layers: number[];
  readonly trainableParams: number;
  /** Held-out test metrics. */
  readonly test: Metrics;
  /** The same on the validation rows (what a choice of settings may look at); absent in cells from before it. */
  readonly validation?: Metrics;
  /**
   * The same on the training rows as trained (noisy labels included): how far the adapter fits what it saw, to
   * set against validation and test; absent in cells from before it.
   */
  readonly train?: Metrics;
  /** Seconds: choosing layers (the gate search, or the heuristic's gradients; 0 for lora), retraining, test scoring. */
  readonly seconds: { readonly search: number; readonly retrain: number; readonly evaluate: number };
  /** The search, selection and retraining options the pipeline resolved (its defaults filled in). */
  readonly resolved: Pick<FinetuneOptions, "search" | "select" | "retrain">;
  /** Flexora's final gate logits, or the heuristic's per-layer scores. */
  readonly scores?: number[];
  /** ISO time the cell finished. */
  readonly finished: string;
}

/** What a cell's run gives; the store adds the cell's identity. */
export type CellOutcome = Omit<
  CellRecord,
  "format" | "key" | "task" | "regime" | "method" | "seed" | "options" | "flexora" | "finished"
>;

/** The results file of a study folder. */
export class CellStore {
  readonly file: string;
  readonly #cells = new Map<string, CellRecord>();

  private constructor(file: string) {
    this.file = file;
  }

  /** Opens (creating the folder) and reads the finished cells; an unreadable line (a cut-off write) is skipped. */
  static async open(dir: string, onWarning: (message: string) => void = () => {}): Promise<CellStore> {
    await Deno.mkdir(dir, { recursive: true });
    const store = new CellStore(join(dir, "cells.jsonl"));
    let text = "";
    try {
      text = await Deno.readTextFile(store.file);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    text.split("\n").forEach((line, i) => {
      if (line.trim() === "") return;
      try {
        const r = JSON.parse(line) as CellRecord;
        if (r.format !== CELL_FORMAT || !r.resolved) throw new Error(`format ${r.format}`);
        // Keyed by what it ran with: a cell trained under other defaults does not answer for today's.
        store.#cells.set(cellKey(r, r.resolved), r);
      } catch (e) {
        onWarning(`${store.file}:${i + 1}: skipped an unreadable cell (${(e as Error).message})`);
      }
    });
    return store;
  }

  /** The finished cell with this key. */
  get(key: string): CellRecord | undefined {
    return this.#cells.get(key);
  }

  /** Every finished cell, in file order. */
  all(): CellRecord[] {
    return [...this.#cells.values()];
  }

  /** Records a finished cell: one line appended to the file; `key` is the cell's {@link cellKey}. */
  async add(spec: CellSpec, key: string, outcome: CellOutcome): Promise<CellRecord> {
    const record: CellRecord = {
      format: CELL_FORMAT,
      key,
      task: spec.task,
      regime: spec.regime,
      method: spec.method,
      seed: spec.seed,
      options: spec.options,
      flexora: spec.flexora,
      ...outcome,
      finished: new Date().toISOString(),
    };
    // Start on a fresh line even when a previous write was cut off.
    const text = await Deno.readTextFile(this.file).catch(() => "");
    const sep = text === "" || text.endsWith("\n") ? "" : "\n";
    await Deno.writeTextFile(this.file, sep + JSON.stringify(record) + "\n", { append: true });
    this.#cells.set(key, record);
    return record;
  }
}

/**
 * The whole pipeline in one call: load → prepare data → gate search → layer selection (→ choice among prefixes
 * by validation loss, for the `validation:K` rule) → retraining → evaluation
 * → PEFT export, each a stage of {@link ./stages.ts}; or one of the baselines in the same harness (`lora` on every
 * layer, `random-k` on seeded random layers). The CLI, the sidecar's runner and the library all run it.
 *
 * @module
 */

import type { Dataset } from "../data/dataset.ts";
import type { Model } from "../model/model.ts";
import type { FinetuneInput, FinetuneOptions } from "./options.ts";
import type { EpochMetrics, EvalMetrics } from "./records.ts";
import type { RetrainResult } from "./retrain.ts";
import type { SearchResult } from "./search.ts";
import type { Selection } from "./select.ts";
import { peakRss } from "../util/memory.ts";
import {
  chooseStage,
  evaluateStage,
  exportStage,
  loadStage,
  prepareStage,
  retrainStage,
  searchStage,
  selectStage,
  type StageHooks,
} from "./stages.ts";

export { randomLayers } from "./stages.ts";

/** What {@link finetune} did. */
export interface FinetuneResult {
  readonly method: FinetuneOptions["method"];
  readonly options: FinetuneOptions;
  readonly layers: number[];
  readonly search?: SearchResult;
  readonly selection?: Selection;
  readonly retrain: RetrainResult;
  /** Trainable parameters of the retrained adapter. */
  readonly trainableParams: number;
  /** Seconds per stage. */
  readonly timings: Record<string, number>;
  /** Examples cut to maxLength, and dropped for having no completion tokens left, in train and validation. */
  readonly truncated: number;
  readonly dropped: number;
  /** Where the adapter was written, when an output folder was given. */
  readonly adapterDir?: string;
}

/** Hooks of {@link finetune}: progress, stop, checkpoints (one folder per stage under `checkpointDir`), output. */
export type FinetuneHooks = StageHooks;

/**
 * Runs the whole pipeline on a model (or its folder, loaded in `dtype`) and a dataset (or its path). A model
 * given loaded runs in its own dtype, which `dtype`, when given, must equal.
 *
 * @example
 * ```ts
 * import { finetune } from "./pipeline.ts";
 * const fixtures = new URL("../../fixtures/", import.meta.url).pathname;
 * const out = await Deno.makeTempDir();
 * const controller = new AbortController(); // abort() stops between steps
 * const r = await finetune(fixtures + "tiny-llama", fixtures + "tiny-data", {
 *   search: { loraLr: 1e-2, gateLr: 0.05 },
 *   retrain: { lr: 1e-2, epochs: 1 },
 *   maxLength: 64,
 * }, { out: out + "/adapter", signal: controller.signal, onProgress: (e) => void e.step });
 * if (r.layers.length === 0 || !r.adapterDir) throw new Error("layers selected and adapter written");
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export async function finetune(
  modelOrDir: Model | string,
  dataOrPath: Dataset | string,
  input: FinetuneInput = {},
  hooks: FinetuneHooks = {},
): Promise<FinetuneResult> {
  const loaded = await loadStage(modelOrDir, input, hooks);
  const prepared = await prepareStage(loaded, dataOrPath, hooks);
  const searched = await searchStage(loaded, prepared, hooks);
  const selected = await chooseStage(loaded, prepared, selectStage(loaded, searched, hooks), hooks);
  const retrained = await retrainStage(loaded, prepared, selected, hooks);
  const evaluation = evaluateStage(searched, retrained);
  const exportStarted = performance.now();
  const adapterDir = await exportStage(
    loaded,
    { prepared, searched, selected, retrained, evaluation },
    hooks,
  );
  return {
    method: loaded.options.method,
    options: loaded.options,
    layers: selected.layers,
    search: searched,
    selection: selected.selection,
    retrain: retrained,
    trainableParams: evaluation.trainableParams,
    timings: {
      ...(searched && { search: searched.seconds }),
      retrain: retrained.seconds,
      ...(adapterDir && { export: (performance.now() - exportStarted) / 1000 }),
    },
    truncated: prepared.truncated,
    dropped: prepared.dropped,
    adapterDir,
  };
}

/** A finished run as one JSON object. */
export type RunSummary = {
  /** The process's peak resident memory when the summary was made. */
  readonly peakRssBytes: number;
  readonly method: FinetuneResult["method"];
  readonly adapter: string | null;
  readonly selectedLayers: number[];
  readonly gates: { readonly logits: number[]; readonly values: number[] } | null;
  readonly ranking: number[] | null;
  readonly trainableParams: number;
  readonly test: EvalMetrics | null;
  readonly validation: EvalMetrics | null;
  readonly epochs: EpochMetrics[];
  /** Seconds per stage, summed over the segments of a resumed run. */
  readonly timings: Record<string, number>;
  readonly truncated: number;
  readonly dropped: number;
};

/**
 * What a run reports as JSON: the CLI's `--json` line, and the sidecar runner's `result` event (kept in the job
 * record). `peakRssBytes` is the process's peak resident memory when the summary is made.
 */
export function summary(r: FinetuneResult): RunSummary {
  const last = r.retrain.epochs.at(-1);
  return {
    peakRssBytes: peakRss().bytes,
    method: r.method,
    adapter: r.adapterDir ?? null,
    selectedLayers: r.layers,
    gates: r.search ? { logits: r.search.logits, values: r.search.gates } : null,
    ranking: r.selection?.ranking ?? null,
    trainableParams: r.trainableParams,
    test: last?.test ?? null,
    validation: last?.validation ?? null,
    epochs: r.retrain.epochs,
    timings: r.timings,
    truncated: r.truncated,
    dropped: r.dropped,
  };
}

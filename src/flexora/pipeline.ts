/**
 * The whole pipeline in one call: data → gate search → layer selection → retraining → evaluation → PEFT export,
 * or one of the baselines in the same harness (`lora` on every layer, `random-k` on seeded random layers).
 *
 * @module
 */

import { join } from "node:path";
import { carveValidation, type Dataset, loadDataset } from "../data/dataset.ts";
import type { Example } from "../data/example.ts";
import { tokenizeExamples } from "../data/tokenize.ts";
import { dtypeWarning, loadModel, type Model } from "../model/model.ts";
import { Rng } from "../util/random.ts";
import { type ExportOptions, exportPeft } from "./export.ts";
import {
  type FinetuneInput,
  type FinetuneOptions,
  OptionsError,
  resolveOptions,
  type RunOptions,
} from "./options.ts";
import { checkFit } from "./plan.ts";
import type { RunHooks } from "./progress.ts";
import { retrain, type RetrainResult } from "./retrain.ts";
import { searchGates, type SearchResult } from "./search.ts";
import { formatSelection, type Selection, selectLayers } from "./select.ts";

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
export interface FinetuneHooks extends RunHooks, ExportOptions {
  /** Write the adapter here (a new folder). */
  out?: string;
  /** Called with warnings (empty selection, truncation, float16 on the CPU). */
  onWarning?: (message: string) => void;
}

/** `k` distinct layers out of `n`, seeded, ascending. */
export function randomLayers(n: number, k: number, seed: number): number[] {
  return new Rng(seed).shuffle([...Array(n).keys()]).slice(0, k).sort((a, b) => a - b);
}

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
  let options = resolveOptions(input);
  const model = typeof modelOrDir === "string"
    ? await loadModel(modelOrDir, { dtype: options.dtype })
    : modelOrDir;
  if (model.dtype !== options.dtype) {
    if (input.dtype !== undefined || model.dtype === "float64") {
      throw new OptionsError(
        "dtype",
        `'dtype' is ${options.dtype}, but the model was loaded in ${model.dtype}`,
      );
    }
    options = { ...options, dtype: model.dtype };
  }
  const warning = dtypeWarning(model.dtype, model.providers);
  if (warning) hooks.onWarning?.(warning);
  const data = typeof dataOrPath === "string"
    ? await loadDataset(dataOrPath, { tokenizer: model.tokenizer })
    : dataOrPath;
  checkFit(options, {
    config: model.config,
    trainExamples: data.train.length,
    validationExamples: data.validation?.length ?? null,
  });
  const split = data.validation
    ? { train: data.train, validation: data.validation }
    : carveValidation(data.train, options.valSize, options.seed);
  const tokenize = (examples: readonly Example[]) =>
    tokenizeExamples(examples, model.tokenizer, { maxLength: options.maxLength, appendEos: true });
  const train = tokenize(split.train), validation = tokenize(split.validation);
  const truncated = train.truncated + validation.truncated, dropped = train.dropped + validation.dropped;
  if (truncated || dropped) {
    hooks.onWarning?.(
      `maxLength ${options.maxLength}: ${truncated} examples truncated, ${dropped} dropped (no completion tokens left)`,
    );
  }
  const stageHooks = (stage: string): RunHooks => ({
    ...hooks,
    checkpointDir: hooks.checkpointDir ? join(hooks.checkpointDir, stage) : undefined,
  });
  const timings: Record<string, number> = {};
  const common: RunOptions = {
    seed: options.seed,
    weightDecay: options.weightDecay,
    maxGradNorm: options.maxGradNorm,
    checkpointEvery: options.checkpointEvery,
  };
  const L = model.config.numLayers;
  let layers: number[], search: SearchResult | undefined, selection: Selection | undefined;
  if (options.method === "flexora") {
    search = await searchGates(model, { train: train.sequences, validation: validation.sequences }, {
      ...options.search,
      ...common,
    }, stageHooks("search"));
    timings.search = search.seconds;
    selection = selectLayers(search.logits, options.select);
    if (selection.warning) hooks.onWarning?.(selection.warning);
    layers = selection.layers;
  } else if (options.method === "lora") {
    layers = [...Array(L).keys()];
  } else {
    // resolveOptions made sure random-k has a top-k rule.
    const k = options.select.kind === "top-k" ? options.select.k : L;
    layers = randomLayers(L, Math.min(k, L), options.seed);
  }
  const retrained = await retrain(
    model,
    { train: train.sequences, validation: split.validation, test: data.test },
    layers,
    { ...options.retrain, ...common },
    stageHooks("retrain"),
  );
  timings.retrain = retrained.seconds;
  const trainableParams = Object.values(retrained.params).reduce((s, t) => s + t.data.length, 0);
  let adapterDir: string | undefined;
  if (hooks.out) {
    const started = performance.now();
    hooks.onProgress?.({
      stage: "export",
      step: 0,
      total: 1,
      elapsed: 0,
      eta: 0,
      message: `writing ${hooks.out}`,
    });
    await exportPeft(hooks.out, model, retrained, {
      method: options.method,
      gates: search ? { logits: search.logits, values: search.gates } : undefined,
      selectedLayers: layers,
      ranking: selection?.ranking,
      selectionRule: options.method === "flexora" ? formatSelection(options.select) : undefined,
      metrics: {
        search: search && { steps: search.steps, seconds: search.seconds, history: search.history },
        retrain: {
          steps: retrained.steps,
          seconds: retrained.seconds,
          epochs: retrained.epochs,
          stoppedEarly: retrained.stoppedEarly,
        },
        trainableParams,
      },
      options,
      seed: options.seed,
      dataHash: data.hash,
    }, hooks);
    timings.export = (performance.now() - started) / 1000;
    adapterDir = hooks.out;
  }
  return {
    method: options.method,
    options,
    layers,
    search,
    selection,
    retrain: retrained,
    trainableParams,
    timings,
    truncated,
    dropped,
    adapterDir,
  };
}

/** What a run reports as JSON: the CLI's `--json` line, and the sidecar runner's `result` event. */
export function summary(r: FinetuneResult): Record<string, unknown> {
  const last = r.retrain.epochs.at(-1);
  return {
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

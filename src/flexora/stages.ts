/**
 * The pipeline's stages, each a function with a typed input and output, in the order {@link ./pipeline.ts} runs
 * them: {@link loadStage} → {@link prepareStage} → {@link searchStage} → {@link selectStage} →
 * {@link chooseStage} → {@link retrainStage} → {@link evaluateStage} → {@link exportStage}.
 *
 * Each is checkpointable: `load`, `prepareData`, `select` and `evaluate` are pure functions of their inputs (the
 * options, the seed, the data), so a resumed run recomputes them to the same values; `search` and `retrain` save
 * their state every `checkpointEvery` steps, when stopped and at their end (one folder per stage under the
 * checkpoint directory), and a resumed stage continues from it; `export` writes its folder atomically.
 *
 * @module
 */

import { join } from "node:path";
import { carveValidation, type Dataset, loadDataset } from "../data/dataset.ts";
import type { Example } from "../data/example.ts";
import type { Sequence } from "../data/sequence.ts";
import { tokenizeExamples } from "../data/tokenize.ts";
import { dtypeWarning, loadModel, type Model } from "../model/model.ts";
import { Rng } from "../util/random.ts";
import { type ExportOptions, exportPeft } from "./export.ts";
import type { FlexoraMetrics } from "./flexora_json.ts";
import {
  type FinetuneInput,
  type FinetuneOptions,
  OptionsError,
  resolveOptions,
  type RunOptions,
} from "./options.ts";
import { checkFit } from "./plan.ts";
import type { RunHooks } from "./progress.ts";
import type { EpochMetrics } from "./records.ts";
import { retrain, type RetrainResult } from "./retrain.ts";
import { searchGates, type SearchResult } from "./search.ts";
import { formatSelection, type Selection, selectLayers } from "./select.ts";

/** Hooks every stage takes: progress, stop, checkpoints (one folder per stage under `checkpointDir`), output. */
export interface StageHooks extends RunHooks, ExportOptions {
  /** Write the adapter here (a new folder). */
  out?: string;
  /** Called with warnings (empty selection, truncation, float16 on the CPU). */
  onWarning?: (message: string) => void;
}

/** What {@link loadStage} gives: the model, and the options resolved against it. */
export interface Loaded {
  readonly model: Model;
  readonly options: FinetuneOptions;
}

/**
 * Load: resolves the options and loads the model (or takes it loaded). A model given loaded runs in its own
 * dtype, which `dtype`, when given, must equal.
 */
export async function loadStage(
  modelOrDir: Model | string,
  input: FinetuneInput,
  hooks: StageHooks = {},
): Promise<Loaded> {
  let options = resolveOptions(input);
  const model = typeof modelOrDir === "string"
    ? await loadModel(modelOrDir, { dtype: options.dtype, baseDtype: options.baseDtype })
    : modelOrDir;
  if (options.baseDtype !== undefined && model.weights.baseDtype !== options.baseDtype) {
    throw new OptionsError(
      "baseDtype",
      `'baseDtype' is ${options.baseDtype}, but the model was loaded with base weights ` +
        `${model.weights.baseDtype ?? "as in its checkpoint"}`,
    );
  }
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
  return { model, options };
}

/** What {@link prepareStage} gives: the dataset, its validation split, and both tokenized. */
export interface Prepared {
  readonly data: Dataset;
  /** Rows the retraining evaluates on after each epoch. */
  readonly validationRows: readonly Example[];
  readonly train: readonly Sequence[];
  readonly validation: readonly Sequence[];
  /** Examples cut to maxLength, and dropped for having no completion tokens left, in train and validation. */
  readonly truncated: number;
  readonly dropped: number;
}

/**
 * Prepare data: loads the dataset (or takes it loaded), checks the options fit the model and the data
 * ({@link checkFit}), carves a seeded validation split when it has none, and tokenizes train and validation (EOS
 * appended, cut to maxLength).
 */
export async function prepareStage(
  { model, options }: Loaded,
  dataOrPath: Dataset | string,
  hooks: StageHooks = {},
): Promise<Prepared> {
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
  return {
    data,
    validationRows: split.validation,
    train: train.sequences,
    validation: validation.sequences,
    truncated,
    dropped,
  };
}

/** The options both training stages share. */
function runOptions(options: FinetuneOptions): RunOptions {
  return {
    seed: options.seed,
    weightDecay: options.weightDecay,
    maxGradNorm: options.maxGradNorm,
    checkpointEvery: options.checkpointEvery,
    recompute: options.recompute,
  };
}

/** The hooks of stage `stage`: its checkpoints go to `<checkpointDir>/<stage>`. */
function stageHooks(hooks: StageHooks, stage: "search" | "retrain"): RunHooks {
  return { ...hooks, checkpointDir: hooks.checkpointDir ? join(hooks.checkpointDir, stage) : undefined };
}

/** Search: Flexora's gate search over every layer (see {@link searchGates}); undefined for the baselines. */
export async function searchStage(
  { model, options }: Loaded,
  prepared: Prepared,
  hooks: StageHooks = {},
): Promise<SearchResult | undefined> {
  if (options.method !== "flexora") return undefined;
  return await searchGates(
    model,
    { train: prepared.train, validation: prepared.validation },
    { ...options.search, ...runOptions(options) },
    stageHooks(hooks, "search"),
  );
}

/** `k` distinct layers out of `n`, seeded, ascending. */
export function randomLayers(n: number, k: number, seed: number): number[] {
  return new Rng(seed).shuffle([...Array(n).keys()]).slice(0, k).sort((a, b) => a - b);
}

/** What {@link selectStage} gives: the layers to retrain, and for Flexora the selection that chose them. */
export interface Selected {
  readonly layers: number[];
  readonly selection?: Selection;
}

/**
 * Select: for Flexora, the layers the rule picks from the searched gates; `lora` takes every layer, `random-k`
 * K seeded random layers.
 */
export function selectStage(
  { model, options }: Loaded,
  searched: SearchResult | undefined,
  hooks: StageHooks = {},
): Selected {
  const L = model.config.numLayers;
  if (options.method === "flexora") {
    if (!searched) throw new Error("Cannot select layers: method flexora needs the gate search's result");
    const selection = selectLayers(searched.logits, options.select);
    if (selection.warning) hooks.onWarning?.(selection.warning);
    return { layers: selection.layers, selection };
  }
  if (options.method === "lora") return { layers: [...Array(L).keys()] };
  // resolveOptions made sure random-k has a top-k rule.
  const k = options.select.kind === "top-k" ? options.select.k : L;
  return { layers: randomLayers(L, Math.min(k, L), options.seed) };
}

/**
 * Choose (the `validation:K` rule only; other rules pass through): retrains a fresh LoRA on each of the K
 * gate-ranked prefixes of the selection (top 1, top 2, …, top K layers) with the retraining's settings, scored on
 * the validation split only, and keeps the prefix whose last epoch has the lowest validation loss (the smaller one
 * on a tie). Costs K retrains besides the run's own (without checkpoints: a resumed run repeats them, to the same
 * result, as they are seeded).
 */
export async function chooseStage(
  { model, options }: Loaded,
  prepared: Prepared,
  selected: Selected,
  hooks: StageHooks = {},
): Promise<Selected> {
  const candidates = selected.selection?.candidates;
  if (!candidates) return selected;
  let best: { layers: number[]; loss: number } | undefined;
  for (const layers of candidates) {
    const r = await retrain(
      model,
      { train: prepared.train, validation: prepared.validationRows },
      layers,
      { ...options.retrain, ...runOptions(options), checkpointEvery: 0 },
      { signal: hooks.signal },
    );
    const loss = r.epochs.at(-1)?.validation?.loss ?? Infinity;
    hooks.onProgress?.({
      stage: "evaluate",
      step: r.steps,
      total: r.steps,
      elapsed: r.seconds,
      eta: 0,
      valLoss: loss,
      message: `selection: layers ${layers.join(",")} reach validation loss ${loss.toFixed(4)}`,
    });
    if (!best || loss < best.loss) best = { layers, loss };
  }
  return { layers: best!.layers, selection: { ...selected.selection!, layers: best!.layers } };
}

/** Retrain: a fresh LoRA on the selected layers, evaluated after each epoch (see {@link retrain}). */
export async function retrainStage(
  { model, options }: Loaded,
  prepared: Prepared,
  selected: Selected,
  hooks: StageHooks = {},
): Promise<RetrainResult> {
  return await retrain(
    model,
    { train: prepared.train, validation: prepared.validationRows, test: prepared.data.test },
    selected.layers,
    { ...options.retrain, ...runOptions(options) },
    stageHooks(hooks, "retrain"),
  );
}

/** What {@link evaluateStage} gives: the run's metrics, as `flexora.json` and the summary record them. */
export interface Evaluation {
  /** The last epoch's metrics (validation and test), when there was an epoch. */
  readonly last?: EpochMetrics;
  /** Trainable parameters of the retrained adapter. */
  readonly trainableParams: number;
  readonly metrics: FlexoraMetrics;
}

/**
 * Evaluate: the run's metrics. The retraining scores validation and test after every epoch, so the adapter's
 * metrics are its last epoch's; this gathers them with the search's record and the adapter's size.
 */
export function evaluateStage(searched: SearchResult | undefined, retrained: RetrainResult): Evaluation {
  const trainableParams = Object.values(retrained.params).reduce((s, t) => s + t.data.length, 0);
  return {
    last: retrained.epochs.at(-1),
    trainableParams,
    metrics: {
      search: searched && { steps: searched.steps, seconds: searched.seconds, history: searched.history },
      retrain: {
        steps: retrained.steps,
        seconds: retrained.seconds,
        epochs: retrained.epochs,
        stoppedEarly: retrained.stoppedEarly,
      },
      trainableParams,
    },
  };
}

/** What the export writes: everything the earlier stages produced. */
export interface ExportInput {
  readonly prepared: Prepared;
  readonly searched: SearchResult | undefined;
  readonly selected: Selected;
  readonly retrained: RetrainResult;
  readonly evaluation: Evaluation;
}

/**
 * Export: the PEFT adapter and `flexora.json` to `hooks.out` (a new folder, which appears only when complete);
 * returns the folder, or undefined when no output was asked for.
 */
export async function exportStage(
  { model, options }: Loaded,
  { prepared, searched, selected, retrained, evaluation }: ExportInput,
  hooks: StageHooks = {},
): Promise<string | undefined> {
  if (!hooks.out) return undefined;
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
    gates: searched ? { logits: searched.logits, values: searched.gates } : undefined,
    selectedLayers: selected.layers,
    ranking: selected.selection?.ranking,
    selectionRule: options.method === "flexora" ? formatSelection(options.select) : undefined,
    metrics: evaluation.metrics,
    options,
    seed: options.seed,
    dataHash: prepared.data.hash,
  }, hooks);
  return hooks.out;
}

/**
 * Typed, JSON-serialisable options of the Flexora pipeline, their defaults (those of the paper's code), and
 * validation with messages that name the option and the value. Hugging Face spellings (`lora_alpha`,
 * `target_modules`) appear only where adapters are written.
 *
 * @module
 */

import { TARGET_MODULES, type TargetModule } from "../model/lora.ts";
import { formatSelection, parseSelection, type SelectionRule } from "./select.ts";

/** LoRA shape. */
export interface LoraOptions {
  /** Rank R (default 8). */
  rank: number;
  /** `lora_alpha` (default 16). */
  alpha: number;
  /** Scale α/√R instead of α/R (default false). */
  rslora: boolean;
  /** Projections to adapt (default q_proj and v_proj). */
  targets: TargetModule[];
}

/** The gate search. */
export interface SearchOptions {
  lora: LoraOptions;
  /** AdamW learning rate of the LoRA weights on training batches (default 1e-4). */
  loraLr: number;
  /** Adam learning rate of the gate logits on validation batches (default 0.01). */
  gateLr: number;
  /** Passes over the training data (default 1). */
  epochs: number;
  /** Training sequences per step (default 8). */
  batchSize: number;
  /** Validation sequences per gate step (default 8). */
  valBatchSize: number;
  /** "first-order" (the paper's code) or "unrolled" (adds the second-order term). */
  hypergradient: "first-order" | "unrolled";
}

/** Retraining a fresh LoRA on the selected layers. */
export interface RetrainOptions {
  lora: LoraOptions;
  /** Peak learning rate (default 1e-4). */
  lr: number;
  /** Default 3. */
  epochs: number;
  /** Sequences per update: the effective batch (default 8). */
  batchSize: number;
  /** Sequences per forward pass; gradients are accumulated over batchSize / microBatchSize passes (default 8). */
  microBatchSize: number;
  /** Schedule after warmup (default cosine). */
  schedule: "cosine" | "linear" | "constant";
  /** Fraction of updates spent warming up (default 0.1). */
  warmupRatio: number;
  /** Stop when validation loss has not improved for this many epochs (default 0: never). */
  earlyStoppingPatience: number;
}

/** The whole pipeline. */
export interface FinetuneOptions {
  /** "flexora" (search, select, retrain), "lora" (all layers), or "random-k" (as many seeded random layers as flexora picks). */
  method: "flexora" | "lora" | "random-k";
  search: SearchOptions;
  select: SelectionRule;
  retrain: RetrainOptions;
  /** Longest sequence in tokens; longer examples are cut (default 512). */
  maxLength: number;
  /** Validation examples carved from train when the dataset has no validation split (default 200). */
  valSize: number;
  /** Seed of data order, LoRA init, validation carving and random-k (default 0). */
  seed: number;
  /** AdamW weight decay of LoRA weights (default 0) and gradient clipping norm (default 1). */
  weightDecay: number;
  maxGradNorm: number;
  /** Save a checkpoint every this many steps (default 50; 0: only at the end of a stage and on stop). */
  checkpointEvery: number;
  /**
   * Compute type (default float32). float16 is mixed precision for GPUs: float16 activations and base weights,
   * float32 LoRA weights, gates and optimizer state, dynamic loss scaling (see `loadModel`); on the CPU it is
   * emulated, no faster than float32, and the run warns.
   */
  dtype: "float32" | "float16";
}

/** The run-wide settings every stage takes alongside its own options. */
export type RunOptions = Pick<FinetuneOptions, "seed" | "weightDecay" | "maxGradNorm" | "checkpointEvery">;

/** The defaults, as the Flexora authors' code runs. */
export function defaultOptions(): FinetuneOptions {
  const lora = (): LoraOptions => ({ rank: 8, alpha: 16, rslora: false, targets: ["q_proj", "v_proj"] });
  return {
    method: "flexora",
    search: {
      lora: lora(),
      loraLr: 1e-4,
      gateLr: 0.01,
      epochs: 1,
      batchSize: 8,
      valBatchSize: 8,
      hypergradient: "first-order",
    },
    select: { kind: "positive" },
    retrain: {
      lora: lora(),
      lr: 1e-4,
      epochs: 3,
      batchSize: 8,
      microBatchSize: 8,
      schedule: "cosine",
      warmupRatio: 0.1,
      earlyStoppingPatience: 0,
    },
    maxLength: 512,
    valSize: 200,
    seed: 0,
    weightDecay: 0,
    maxGradNorm: 1,
    checkpointEvery: 50,
    dtype: "float32",
  };
}

/** Options as callers give them: any field, at any depth, may be left out. */
export interface FinetuneInput {
  method?: FinetuneOptions["method"];
  search?: Partial<Omit<SearchOptions, "lora">> & { lora?: Partial<LoraOptions> };
  /** A rule, or its text form: `positive`, `top-k:K`, `threshold:T`. */
  select?: SelectionRule | string;
  retrain?: Partial<Omit<RetrainOptions, "lora">> & { lora?: Partial<LoraOptions> };
  maxLength?: number;
  valSize?: number;
  seed?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  checkpointEvery?: number;
  dtype?: FinetuneOptions["dtype"];
}

/** Thrown for invalid options; the message starts "Cannot start training:" and names the option and the value. */
export class OptionsError extends Error {
  override name = "OptionsError";
}

function fail(path: string, want: string, got: unknown): never {
  throw new OptionsError(
    `Cannot start training: '${path}' must be ${want}, got ${JSON.stringify(got) ?? String(got)}`,
  );
}
const posInt = (
  path: string,
  v: unknown,
) => (Number.isInteger(v) && (v as number) > 0 ? v as number : fail(path, "a positive integer", v));
const nonNegInt = (
  path: string,
  v: unknown,
) => (Number.isInteger(v) && (v as number) >= 0 ? v as number : fail(path, "an integer >= 0", v));
const posNum = (
  path: string,
  v: unknown,
) => (typeof v === "number" && v > 0 && Number.isFinite(v) ? v : fail(path, "a positive number", v));
const nonNeg = (
  path: string,
  v: unknown,
) => (typeof v === "number" && v >= 0 && Number.isFinite(v) ? v : fail(path, "a number >= 0", v));
function oneOf<T extends string>(path: string, v: unknown, choices: readonly T[]): T {
  return choices.includes(v as T) ? v as T : fail(path, `one of ${choices.join(", ")}`, v);
}

function checkLora(path: string, l: LoraOptions): LoraOptions {
  posInt(`${path}.rank`, l.rank);
  posNum(`${path}.alpha`, l.alpha);
  if (typeof l.rslora !== "boolean") fail(`${path}.rslora`, "true or false", l.rslora);
  if (!Array.isArray(l.targets) || l.targets.length === 0) {
    fail(`${path}.targets`, "a non-empty list of modules", l.targets);
  }
  for (const t of l.targets) oneOf(`${path}.targets`, t, TARGET_MODULES);
  return l;
}

/** Fills defaults and validates; throws {@link OptionsError}. `select` may also be given as text (`top-k:3`). */
export function resolveOptions(
  input: FinetuneInput = {},
): FinetuneOptions {
  const d = defaultOptions();
  const known = new Set(Object.keys(d));
  for (const k of Object.keys(input)) {
    if (!known.has(k)) fail(k, `one of the options ${[...known].join(", ")}`, "unknown option");
  }
  const select = typeof input.select === "string" ? parseSelection(input.select) : input.select ?? d.select;
  const o: FinetuneOptions = {
    ...d,
    ...input,
    search: { ...d.search, ...input.search, lora: { ...d.search.lora, ...input.search?.lora } },
    retrain: { ...d.retrain, ...input.retrain, lora: { ...d.retrain.lora, ...input.retrain?.lora } },
    select,
  } as FinetuneOptions;
  oneOf("method", o.method, ["flexora", "lora", "random-k"] as const);
  checkLora("search.lora", o.search.lora);
  checkLora("retrain.lora", o.retrain.lora);
  posNum("search.loraLr", o.search.loraLr);
  posNum("search.gateLr", o.search.gateLr);
  posInt("search.epochs", o.search.epochs);
  posInt("search.batchSize", o.search.batchSize);
  posInt("search.valBatchSize", o.search.valBatchSize);
  oneOf("search.hypergradient", o.search.hypergradient, ["first-order", "unrolled"] as const);
  posNum("retrain.lr", o.retrain.lr);
  posInt("retrain.epochs", o.retrain.epochs);
  posInt("retrain.batchSize", o.retrain.batchSize);
  if (input.retrain?.microBatchSize === undefined) o.retrain.microBatchSize = o.retrain.batchSize;
  posInt("retrain.microBatchSize", o.retrain.microBatchSize);
  if (o.retrain.batchSize % o.retrain.microBatchSize !== 0) {
    fail(
      "retrain.microBatchSize",
      `a divisor of retrain.batchSize (${o.retrain.batchSize})`,
      o.retrain.microBatchSize,
    );
  }
  oneOf("retrain.schedule", o.retrain.schedule, ["cosine", "linear", "constant"] as const);
  if (!(o.retrain.warmupRatio >= 0 && o.retrain.warmupRatio <= 1)) {
    fail("retrain.warmupRatio", "in [0, 1]", o.retrain.warmupRatio);
  }
  nonNegInt("retrain.earlyStoppingPatience", o.retrain.earlyStoppingPatience);
  posInt("maxLength", o.maxLength);
  posInt("valSize", o.valSize);
  if (!Number.isInteger(o.seed)) fail("seed", "an integer", o.seed);
  nonNeg("weightDecay", o.weightDecay);
  posNum("maxGradNorm", o.maxGradNorm);
  nonNegInt("checkpointEvery", o.checkpointEvery);
  oneOf("dtype", o.dtype, ["float32", "float16"] as const);
  formatSelection(o.select);
  return o;
}

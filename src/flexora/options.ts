/**
 * Typed, JSON-serialisable options of the Flexora pipeline, their defaults (those of the paper's code), and their
 * one schema ({@link FinetuneInputSchema}), which the library, the CLI and the sidecar's API all validate with:
 * messages name the option and the value (`Cannot start training: 'search.lora.rank' must be a positive
 * integer, got 0`). Checks that need the model or the data (rank against the model's sizes, the validation size
 * against the data, the number of steps) are in `./plan.ts`. Hugging Face spellings (`lora_alpha`,
 * `target_modules`) appear only where adapters are written.
 *
 * @module
 */

import { z } from "zod";
import { TARGET_MODULES, type TargetModule } from "../model/lora.ts";
import { parseSelection, type SelectionRule } from "./select.ts";

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
  /**
   * AdamW learning rate of the LoRA weights on training batches (default: `retrain.lr`, so the search trains its
   * LoRA at the rate the retraining will; 1e-4 when neither is given).
   */
  loraLr: number;
  /** Adam learning rate of the gate logits on validation batches (default 0.01). */
  gateLr: number;
  /**
   * Passes over the training data (default 1, the paper's); a fraction searches on that share of an epoch's
   * batches (see {@link searchSteps}): 0.5 halves the search's time, at a cost in selection quality measured in
   * BENCHMARKS.md ("Search diagnosis").
   */
  epochs: number;
  /** Training sequences per step (default 8). */
  batchSize: number;
  /** Validation sequences per gate step (default 8). */
  valBatchSize: number;
  /** "first-order" (the paper's code) or "unrolled" (adds the second-order term). */
  hypergradient: "first-order" | "unrolled";
  /** How gate g scales its layer's branches: "linear" (the paper's formula, default) or "cubed" (g³, the authors' hooks). */
  gateForm: "linear" | "cubed";
  /**
   * How Adam normalizes the gate hypergradient: "per-layer" (Adam's own, the authors' code: each logit whose
   * hypergradient keeps its sign moves about gateLr per step, whatever its size) or "shared" (one second moment
   * over all layers: the logits move in proportion to their hypergradients, so their ranking reflects them).
   */
  gateNormalization: "per-layer" | "shared";
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
  /**
   * Frozen-prefix cache (default 0: off): with LoRA only at and above layer l, the input of layer l is computed
   * once per training sequence and reused in every epoch; up to this many MiB in memory, the rest in a
   * temporary file. The updates are those without it, up to float rounding.
   */
  prefixCacheMiB: number;
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
  /**
   * How the frozen base weights are stored (default: as the checkpoint stores them): `bf16`/`f16` keep an F32
   * checkpoint's weights as one 16-bit copy in memory, cast to `dtype` in the graph right before use; LoRA
   * weights, gates and optimizer state stay float32 (see `loadModel`).
   */
  baseDtype?: "bf16" | "f16" | "f32";
  /**
   * Per-layer activation checkpointing in the search and retraining (default false): backward keeps each
   * layer's input and rebuilds the layer's forward from it, trading a second forward pass for activation memory.
   */
  recompute: boolean;
}

/** The run-wide settings every stage takes alongside its own options. */
export type RunOptions =
  & Pick<FinetuneOptions, "seed" | "weightDecay" | "maxGradNorm" | "checkpointEvery">
  & Partial<Pick<FinetuneOptions, "recompute">>;

/**
 * The defaults, as the Flexora authors' code runs them, before {@link resolveOptions} ties the ones that follow
 * others: `retrain.microBatchSize` follows `retrain.batchSize`, `search.loraLr` follows `retrain.lr`.
 */
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
      gateForm: "linear",
      gateNormalization: "per-layer",
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
      prefixCacheMiB: 0,
    },
    maxLength: 512,
    valSize: 200,
    seed: 0,
    weightDecay: 0,
    maxGradNorm: 1,
    checkpointEvery: 50,
    dtype: "float32",
    recompute: false,
  };
}

/** The most epochs a stage may run. */
export const MAX_EPOCHS = 1000;

/**
 * The search's updates: `epochs` (a fraction allowed) times the batches of an epoch, rounded, at least one.
 *
 * @example
 * ```ts
 * import { searchSteps } from "./options.ts";
 * if (searchSteps(0.25, 250) !== 63 || searchSteps(0.01, 16) !== 1) throw new Error("rounded, at least 1");
 * ```
 */
export function searchSteps(epochs: number, batchesPerEpoch: number): number {
  return Math.max(1, Math.round(epochs * batchesPerEpoch));
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => {
  const want = max < Number.MAX_SAFE_INTEGER
    ? `an integer in [${min}, ${max}]`
    : min === 1
    ? "a positive integer"
    : `an integer >= ${min}`;
  return z.int({ error: want }).min(min, { error: want }).max(max, { error: want });
};
const positive = () => z.number({ error: "a positive number" }).positive({ error: "a positive number" });
const nonNegative = () => z.number({ error: "a number >= 0" }).min(0, { error: "a number >= 0" });
const oneOf = <T extends string>(choices: readonly [T, ...T[]]) =>
  z.enum(choices, { error: `one of ${choices.join(", ")}` });
const SELECT_RULE =
  "a rule: positive, top-k:K, validation:K (K a positive integer) or threshold:T (T a number)";
const isRule = (text: string) => {
  try {
    return parseSelection(text) !== null;
  } catch {
    return false;
  }
};

const LoraSchema = z.strictObject({
  rank: int(1).optional(),
  alpha: positive().optional(),
  rslora: z.boolean({ error: "true or false" }).optional(),
  targets: z.array(oneOf(TARGET_MODULES as unknown as [TargetModule, ...TargetModule[]]), {
    error: "a non-empty list of modules",
  }).min(1, { error: "a non-empty list of modules" }).optional(),
});

/** Options as callers give them: any field, at any depth, may be left out. */
export interface FinetuneInput {
  method?: FinetuneOptions["method"];
  search?: Partial<Omit<SearchOptions, "lora">> & { lora?: Partial<LoraOptions> };
  /** A rule, or its text form: `positive`, `top-k:K`, `threshold:T`, `validation:K`. */
  select?: SelectionRule | string;
  retrain?: Partial<Omit<RetrainOptions, "lora">> & { lora?: Partial<LoraOptions> };
  maxLength?: number;
  valSize?: number;
  seed?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  checkpointEvery?: number;
  dtype?: FinetuneOptions["dtype"];
  baseDtype?: FinetuneOptions["baseDtype"];
  recompute?: boolean;
}

/**
 * The schema of {@link FinetuneInput}: every field optional at every depth; objects are strict (an unknown field is
 * an error naming it). The one definition of what options exist and which values they take: `resolveOptions`
 * (so the library and the CLI) parses with it, and the sidecar's job schema embeds it (its OpenAPI description
 * shows it) and reports its problems through {@link optionsIssue}.
 */
export const FinetuneInputSchema: z.ZodType<FinetuneInput> = z.strictObject({
  method: oneOf(["flexora", "lora", "random-k"]).optional(),
  search: z.strictObject({
    lora: LoraSchema.optional(),
    loraLr: positive().optional(),
    gateLr: positive().optional(),
    epochs: z.number({ error: `a number in (0, ${MAX_EPOCHS}]` }).positive({
      error: `a number in (0, ${MAX_EPOCHS}]`,
    })
      .max(MAX_EPOCHS, { error: `a number in (0, ${MAX_EPOCHS}]` }).optional(),
    batchSize: int(1).optional(),
    valBatchSize: int(1).optional(),
    hypergradient: oneOf(["first-order", "unrolled"]).optional(),
    gateForm: oneOf(["linear", "cubed"]).optional(),
    gateNormalization: oneOf(["per-layer", "shared"]).optional(),
  }).optional(),
  select: z.union([
    z.string().max(64, { error: SELECT_RULE }).refine(isRule, { error: SELECT_RULE }),
    z.strictObject({ kind: z.literal("positive") }),
    z.strictObject({ kind: z.literal("top-k"), k: int(1) }),
    z.strictObject({ kind: z.literal("validation"), k: int(1) }),
    z.strictObject({ kind: z.literal("threshold"), threshold: z.number() }),
  ], { error: SELECT_RULE }).optional(),
  retrain: z.strictObject({
    lora: LoraSchema.optional(),
    lr: positive().optional(),
    epochs: int(1, MAX_EPOCHS).optional(),
    batchSize: int(1).optional(),
    microBatchSize: int(1).optional(),
    schedule: oneOf(["cosine", "linear", "constant"]).optional(),
    warmupRatio: z.number({ error: "in [0, 1]" }).min(0, { error: "in [0, 1]" }).max(1, {
      error: "in [0, 1]",
    })
      .optional(),
    earlyStoppingPatience: int(0).optional(),
    prefixCacheMiB: z.number({ error: "a number of MiB >= 0" }).min(0, { error: "a number of MiB >= 0" })
      .optional(),
  }).optional(),
  // Two tokens at least: a prompt token and one to predict.
  maxLength: int(2).optional(),
  valSize: int(1).optional(),
  seed: z.int({ error: "an integer" }).optional(),
  weightDecay: nonNegative().optional(),
  maxGradNorm: positive().optional(),
  checkpointEvery: int(0).optional(),
  dtype: oneOf(["float32", "float16"]).optional(),
  baseDtype: oneOf(["bf16", "f16", "f32"]).optional(),
  recompute: z.boolean({ error: "true or false" }).optional(),
});

/** Thrown for invalid options; the message starts "Cannot start training:" and names the option and the value. */
export class OptionsError extends Error {
  override name = "OptionsError";
  /** The option's path (`retrain.batchSize`). */
  readonly option: string;
  constructor(option: string, message: string) {
    super(`Cannot start training: ${message}`);
    this.option = option;
  }
}

/** A value as messages show it: JSON, with NaN and infinities spelled out, cut to 60 characters. */
function show(value: unknown): string {
  const text = typeof value === "number" && !Number.isFinite(value)
    ? String(value)
    : JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** `'path' must be WANT, got VALUE` as an {@link OptionsError}. */
export function optionsError(path: string, want: string, got: unknown): OptionsError {
  return new OptionsError(path, `'${path}' must be ${want}, got ${show(got)}`);
}

/** The value at `path` in `input`, or undefined. */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const key of path) {
    v = v !== null && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[key] : undefined;
  }
  return v;
}

/**
 * The {@link OptionsError} for the first problem zod found with `input` (the sidecar's request validation
 * formats option problems with it too, so the library, the CLI and the API say the same thing).
 */
export function optionsIssue(
  issue: { code: string; path: readonly PropertyKey[]; message: string; keys?: readonly string[] },
  input: unknown,
): OptionsError {
  const path = issue.path.map(String);
  if (issue.code === "unrecognized_keys" && issue.keys?.length) {
    const option = [...path, issue.keys[0]].join(".");
    const known = Object.keys(valueAt(defaultOptions(), path) ?? {});
    return new OptionsError(
      option,
      `'${option}' is not an option${known.length ? ` (options there: ${known.join(", ")})` : ""}`,
    );
  }
  const option = path.join(".") || "options";
  if (path.length === 0) return optionsError(option, "an object", input);
  return optionsError(option, issue.message, valueAt(input, issue.path));
}

/**
 * Fills defaults and validates with {@link FinetuneInputSchema}, then the combinations no single field shows:
 * the micro-batch against the batch, the selection rule against the method. Throws {@link OptionsError}.
 */
export function resolveOptions(input: FinetuneInput = {}): FinetuneOptions {
  const parsed = FinetuneInputSchema.safeParse(input);
  if (!parsed.success) throw optionsIssue(parsed.error.issues[0], input);
  const given = parsed.data;
  const d = defaultOptions();
  const o: FinetuneOptions = {
    ...d,
    ...given,
    search: { ...d.search, ...given.search, lora: { ...d.search.lora, ...given.search?.lora } },
    retrain: { ...d.retrain, ...given.retrain, lora: { ...d.retrain.lora, ...given.retrain?.lora } },
    select: typeof given.select === "string" ? parseSelection(given.select) : given.select ?? d.select,
  };
  if (given.retrain?.microBatchSize === undefined) o.retrain.microBatchSize = o.retrain.batchSize;
  if (given.search?.loraLr === undefined) o.search.loraLr = o.retrain.lr;
  const { batchSize, microBatchSize } = o.retrain;
  if (microBatchSize > batchSize) {
    throw optionsError("retrain.microBatchSize", `at most retrain.batchSize (${batchSize})`, microBatchSize);
  }
  if (batchSize % microBatchSize !== 0) {
    throw optionsError(
      "retrain.microBatchSize",
      `a divisor of retrain.batchSize (${batchSize})`,
      microBatchSize,
    );
  }
  if (o.method === "random-k" && o.select.kind !== "top-k") {
    throw optionsError(
      "select",
      "top-k:K with method random-k (K: how many random layers to train)",
      given.select ?? "positive",
    );
  }
  return o;
}

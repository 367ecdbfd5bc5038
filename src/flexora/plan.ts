/**
 * The checks of resolved options against the model and the data (which `resolveOptions` cannot see), and an
 * estimate of a run's steps and memory. {@link finetune} runs the checks once it has loaded both; the sidecar
 * runs {@link planFinetune} when a job is submitted, so a job that cannot run is refused with a 400 instead of
 * failing in its runner.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { planFinetune } from "./plan.ts";
 * const fixtures = fileURLToPath(new URL("../../fixtures/", import.meta.url));
 * const plan = await planFinetune(fixtures + "tiny-llama", fixtures + "tiny-data", { retrain: { epochs: 2 } });
 * if (plan.estimate.steps.retrain <= 0 || plan.estimate.memoryBytes <= 0) throw new Error("an estimate");
 * const refused = await planFinetune(fixtures + "tiny-llama", fixtures + "tiny-data", {
 *   retrain: { lora: { rank: 1e6 } },
 * }).catch((e) => e);
 * if (!/'retrain\.lora\.rank' must be at most/.test(refused.message)) throw refused;
 * ```
 *
 * @module
 */

import { loadDataset } from "../data/dataset.ts";
import type { ModelConfig } from "../model/config.ts";
import { readConfig } from "../model/config.ts";
import { moduleDims } from "../model/lora.ts";
import { loadTokenizer } from "../model/tokenizer.ts";
import {
  type FinetuneInput,
  type FinetuneOptions,
  type LoraOptions,
  optionsError,
  resolveOptions,
  searchSteps,
} from "./options.ts";

/** The most optimizer steps one stage may take. */
export const MAX_STEPS = 1_000_000;

/** What the checks and the estimate need to know of the model and the data (no weights are read). */
export interface RunFacts {
  readonly config: ModelConfig;
  /** Examples in the train split. */
  readonly trainExamples: number;
  /** Examples in the validation split; null when it is carved from train (`valSize`). */
  readonly validationExamples: number | null;
}

/** Steps per stage and the memory the run's tensors take at their peak. */
export interface RunEstimate {
  /** Optimizer steps: search (0 unless the method is flexora), retrain (at most: early stopping may cut it). */
  readonly steps: { readonly search: number; readonly retrain: number; readonly total: number };
  /** The base weights in the compute dtype. */
  readonly weightsBytes: number;
  /**
   * Weights, LoRA training state and activations of the larger stage at full-length sequences: a rough formula
   * for planning (not calibrated against measured peaks); the runtime's own overhead comes on top.
   */
  readonly memoryBytes: number;
}

/** Examples the stages train on: the train split, less the carved validation examples. */
function trainCount(o: FinetuneOptions, facts: RunFacts): number {
  return facts.validationExamples === null ? facts.trainExamples - o.valSize : facts.trainExamples;
}

/** Largest useful rank: the smallest width (input or output) of the adapted projections. */
function maxRank(config: ModelConfig, lora: LoraOptions): number {
  return Math.min(...lora.targets.map((t) => Math.min(moduleDims(config, t).in, moduleDims(config, t).out)));
}

function stageSteps(o: FinetuneOptions, facts: RunFacts): { search: number; retrain: number } {
  const n = Math.max(trainCount(o, facts), 0);
  return {
    search: o.method === "flexora" ? searchSteps(o.search.epochs, Math.ceil(n / o.search.batchSize)) : 0,
    retrain: o.retrain.epochs * Math.ceil(n / o.retrain.batchSize),
  };
}

/**
 * Checks options against the model and the data: each stage's rank against the model's widths, the carved
 * validation size against the train split, and each stage's steps against {@link MAX_STEPS}. Throws an
 * `OptionsError` naming the option, the value and the limit.
 */
export function checkFit(o: FinetuneOptions, facts: RunFacts): void {
  for (const stage of ["search", "retrain"] as const) {
    if (stage === "search" && o.method !== "flexora") continue;
    const lora = o[stage].lora, limit = maxRank(facts.config, lora);
    if (lora.rank > limit) {
      throw optionsError(
        `${stage}.lora.rank`,
        `at most ${limit} (the smallest width of ${lora.targets.join(", ")} in this model)`,
        lora.rank,
      );
    }
  }
  if (facts.validationExamples === null && o.valSize >= facts.trainExamples) {
    throw optionsError(
      "valSize",
      `less than the ${facts.trainExamples} training examples the data has (the validation split is carved ` +
        "from train, and at least one example must stay there)",
      o.valSize,
    );
  }
  const steps = stageSteps(o, facts), n = trainCount(o, facts);
  for (const stage of ["search", "retrain"] as const) {
    if (steps[stage] > MAX_STEPS) {
      throw optionsError(
        `${stage}.epochs`,
        `at most ${
          Math.floor(MAX_STEPS / Math.ceil(n / o[stage].batchSize))
        } for this data (${MAX_STEPS} steps ` +
          `of ${stage}.batchSize ${o[stage].batchSize} over ${n} examples)`,
        o[stage].epochs,
      );
    }
  }
}

/** Parameters of the base model. */
function baseParams(c: ModelConfig): number {
  const q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, d = c.hiddenSize;
  const layer = d * q + 2 * d * kv + q * d + 3 * d * c.intermediateSize + 2 * d;
  return c.vocabSize * d * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * layer + d;
}

/** Steps and memory of a run (see {@link RunEstimate}); the options are assumed to pass {@link checkFit}. */
export function estimateRun(o: FinetuneOptions, facts: RunFacts): RunEstimate {
  const c = facts.config, L = c.numLayers, T = o.maxLength;
  const width = o.dtype === "float16" ? 2 : 4;
  const weightsBytes = baseParams(c) * width;
  const loraParams = (lora: LoraOptions, layers: number) =>
    layers * lora.targets.reduce((s, t) => s + lora.rank * (moduleDims(c, t).in + moduleDims(c, t).out), 0);
  // Per token: each layer keeps about 12 widths of D, 3 of the MLP and two attention rows of H × T for the
  // backward pass; the head keeps logits, their softmax and its gradient.
  const perToken = L * (12 * c.hiddenSize + 3 * c.intermediateSize + 2 * c.numHeads * T) + 3 * c.vocabSize;
  const stage = (lora: LoraOptions, layers: number, sequences: number, passes: number) =>
    // LoRA weights, gradients and two Adam moments in float32.
    16 * loraParams(lora, layers) + passes * width * sequences * T * perToken;
  const searchBytes = o.method === "flexora"
    ? stage(
      o.search.lora,
      L,
      o.search.batchSize + o.search.valBatchSize,
      o.search.hypergradient === "unrolled" ? 2 : 1,
    )
    : 0;
  // The retrained layers are chosen by the search; all of them bound it.
  const retrainLayers = o.method === "random-k" && o.select.kind === "top-k" ? Math.min(o.select.k, L) : L;
  const retrainBytes = stage(o.retrain.lora, retrainLayers, o.retrain.microBatchSize, 1);
  const steps = stageSteps(o, facts);
  return {
    steps: { ...steps, total: steps.search + steps.retrain },
    weightsBytes,
    memoryBytes: weightsBytes + Math.max(searchBytes, retrainBytes),
  };
}

/** A run's resolved options, what was read of the model and the data, and its estimate. */
export interface RunPlan {
  readonly options: FinetuneOptions;
  readonly facts: RunFacts;
  readonly estimate: RunEstimate;
}

/**
 * Resolves and checks options for a model folder and a dataset without loading the weights: reads `config.json`,
 * the tokenizer (for chat rows) and the dataset. Throws `OptionsError`, or the model's or the data's own error
 * naming the file.
 */
export async function planFinetune(
  modelDir: string,
  dataPath: string,
  input: FinetuneInput = {},
): Promise<RunPlan> {
  const options = resolveOptions(input);
  const config = await readConfig(modelDir);
  const tokenizer = await loadTokenizer(modelDir, { modelVocabSize: config.vocabSize });
  const data = await loadDataset(dataPath, { tokenizer });
  const facts: RunFacts = {
    config,
    trainExamples: data.train.length,
    validationExamples: data.validation?.length ?? null,
  };
  checkFit(options, facts);
  return { options, facts, estimate: estimateRun(options, facts) };
}

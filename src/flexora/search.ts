/**
 * Flexora's gate search: LoRA on every layer, each layer's branches scaled by its gate g = N·softmax(logits);
 * each step updates the LoRA weights on a training batch (gates fixed, AdamW) and then the gate logits on a
 * validation batch at the updated weights (Adam): hyperparameter optimisation by one-step unrolled
 * differentiation, first order, as the authors' code runs it.
 *
 * @module
 */

import { BatchPlan } from "../data/batches.ts";
import { batchFeeds, type Sequence } from "../data/sequence.ts";
import { GATE_LOGITS } from "../model/graphs.ts";
import { initLora, type LoraConfig, validateLora } from "../model/lora.ts";
import type { Model } from "../model/model.ts";
import { buildSearchStep } from "./train_graphs.ts";
import { hostTensor } from "../runtime/session.ts";
import { adamw } from "../train/optim.ts";
import { stateOutputs, TrainLoop } from "../train/step.ts";
import { resumePoint, runStage } from "./loop.ts";
import { type LoraOptions, type RunOptions, type SearchOptions, searchSteps } from "./options.ts";
import type { RunHooks } from "./progress.ts";
import type { GateRecord } from "./records.ts";

export type { GateRecord } from "./records.ts";

/** Training and validation sequences. */
export interface SearchData {
  readonly train: readonly Sequence[];
  readonly validation: readonly Sequence[];
}

/** What the search found. */
export interface SearchResult {
  /** Final gate logits and gates g = N·softmax(logits), per layer. */
  readonly logits: number[];
  readonly gates: number[];
  /** Gate values after every step. */
  readonly history: GateRecord[];
  readonly steps: number;
  readonly seconds: number;
}

/** A LoRA configuration on `layers` from options. */
export function loraConfig(model: Model, lora: LoraOptions, layers: readonly number[]): LoraConfig {
  return validateLora(model.config, {
    rank: lora.rank,
    alpha: lora.alpha,
    rslora: lora.rslora,
    targets: lora.targets,
    layers,
  });
}

/** Gates g = N·softmax(logits). */
export function gatesOf(logits: readonly number[]): number[] {
  const max = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => (v / sum) * logits.length);
}

/**
 * Runs the search; see the module doc.
 *
 * @example
 * ```ts
 * import { loadDataset, tokenizeExamples } from "../data/mod.ts";
 * import { loadModel } from "../model/model.ts";
 * import { resolveOptions } from "./options.ts";
 * import { searchGates } from "./search.ts";
 * const fixtures = new URL("../../fixtures/", import.meta.url).pathname;
 * const model = await loadModel(fixtures + "tiny-llama");
 * const data = await loadDataset(fixtures + "tiny-data");
 * const tok = (e: typeof data.train) => tokenizeExamples(e, model.tokenizer, { maxLength: 64 }).sequences;
 * const o = resolveOptions({ search: { loraLr: 1e-2, gateLr: 0.05 } });
 * const result = await searchGates(model, { train: tok(data.train), validation: tok(data.validation!) }, {
 *   ...o.search, seed: 0, weightDecay: 0, maxGradNorm: 1, checkpointEvery: 0,
 * });
 * if (result.gates.length !== 3 || result.history.length !== result.steps) throw new Error("one record per step");
 * ```
 */
export async function searchGates(
  model: Model,
  data: SearchData,
  options: SearchOptions & RunOptions,
  hooks: RunHooks = {},
): Promise<SearchResult> {
  if (data.train.length === 0) {
    throw new Error("the search needs training examples; the train split is empty");
  }
  if (data.validation.length === 0) {
    throw new Error("the search needs validation examples; the validation split is empty");
  }
  const L = model.config.numLayers;
  const lora = loraConfig(model, options.lora, [...Array(L).keys()]);
  const { graph, step } = buildSearchStep(model.config, model.weights, lora, {
    lora: adamw({ weightDecay: options.weightDecay, maxGradNorm: options.maxGradNorm }),
    gates: adamw({ weightDecay: 0, sharedSecondMoment: options.gateNormalization === "shared" }),
  }, { hypergradient: options.hypergradient, gateForm: options.gateForm, recompute: options.recompute });
  const session = await model.session({ graph, outputs: step.outputs }, {
    deviceOutputs: stateOutputs(step),
  });
  const trainPlan = new BatchPlan(data.train, { batchSize: options.batchSize, seed: options.seed });
  const valPlan = new BatchPlan(data.validation, { batchSize: options.valBatchSize, seed: options.seed + 1 });
  const total = searchSteps(options.epochs, trainPlan.batchesPerEpoch);
  const pad = model.tokenizer.padTokenId ?? 0;

  const resumed = await resumePoint("search", hooks);
  const history: GateRecord[] = resumed?.record.history ?? [];
  const initial = resumed?.tensors ?? {
    ...initLora(model.config, lora, options.seed),
    [GATE_LOGITS]: hostTensor("float32", [L]),
  };
  const loop = new TrainLoop(session, step, initial, resumed?.step ?? 0);
  let seconds = 0;
  let logits: number[];
  try {
    seconds = await runStage(
      loop,
      {
        stage: "search",
        totalSteps: total,
        learningRates: { "search.loraLr": options.loraLr, "search.gateLr": options.gateLr },
        run: (s) =>
          loop.step({
            ...batchFeeds(trainPlan.batch(s), pad),
            ...batchFeeds(valPlan.batch(s), pad, "val/"),
          }, { lora: options.loraLr, gates: options.gateLr }),
        after: async (s, result) => {
          const logits = Array.from((await loop.params())[GATE_LOGITS].data as Float32Array);
          const gates = gatesOf(logits);
          history.push({
            step: s + 1,
            logits,
            gates,
            trainLoss: result.losses.lora,
            valLoss: result.losses.gates,
            gateGradNorm: result.gradNorms.gates,
            ...(result.skipped ? { skipped: true } : {}),
          });
          return { valLoss: result.skipped ? undefined : result.losses.gates, gates, logits };
        },
        record: () => ({ history }),
      },
      hooks,
      options.checkpointEvery,
      resumed?.seconds,
    );
    // Read before the session goes, with the device memory it holds.
    logits = Array.from((await loop.params())[GATE_LOGITS].data as Float32Array);
  } finally {
    await session.release();
  }
  return {
    logits,
    gates: gatesOf(logits),
    history,
    steps: loop.steps,
    seconds,
  };
}

/**
 * Training graphs of a model: a LoRA train step (gates, when present, held fixed), and the Flexora search step
 * that runs in one session: a LoRA update on a training batch with the gates fixed, then the gradient of a
 * validation batch's loss with respect to the gate logits at the updated LoRA weights, then the gate update.
 *
 * Batches are right-padded token ids with labels already shifted (labels[b, t] is the token after position t,
 * or -100 where no loss is taken). Legend as in {@link ./llama.ts}.
 *
 * @module
 */

import { flatten } from "../graph/build.ts";
import { Graph, type Value } from "../graph/graph.ts";
import type { Optimizer } from "../train/optim.ts";
import { TrainStepBuilder, type TrainStepGraph } from "../train/step.ts";
import { IGNORE } from "./batch.ts";
import type { ModelConfig } from "./config.ts";
import { type AdapterSpec, GATE_LOGITS, gateValues, loraInputs } from "./graphs.ts";
import { decoder, type DecoderInputs, lmHeadWeight, type LoraBinding } from "./llama.ts";
import { DEFAULT_VOCAB_CHUNK, lmHeadLoss, type LossWithBackward } from "./lm_loss.ts";
import type { LoraConfig } from "./lora.ts";
import type { WeightStore } from "./weights.ts";

/** A token batch's inputs: ids, positions, mask and labels, all [B, T] int64, named with `prefix`. */
export function batchInputs(g: Graph, prefix = ""): { inputs: DecoderInputs; labels: Value } {
  const [B, T] = [`${prefix}B`, `${prefix}T`];
  return {
    inputs: {
      ids: g.input(`${prefix}input_ids`, "int64", [B, T]),
      positions: g.input(`${prefix}position_ids`, "int64", [B, T]),
      keyMask: g.input(`${prefix}attention_mask`, "int64", [B, T]),
    },
    labels: g.input(`${prefix}labels`, "int64", [B, T]),
  };
}

/**
 * Mean cross-entropy of the next-token predictions over labels that are not ignored, with the LM head in
 * vocabulary chunks of `vocabChunk` classes (see {@link lmHeadLoss}).
 */
export function lmLoss(
  cfg: ModelConfig,
  weights: WeightStore,
  batch: { inputs: DecoderInputs; labels: Value },
  lora?: LoraBinding,
  vocabChunk: number = DEFAULT_VOCAB_CHUNK,
): LossWithBackward {
  const g = batch.labels.graph;
  const { hidden } = decoder(cfg, weights, batch.inputs, lora);
  return g.scope(
    "lm_head",
    () =>
      lmHeadLoss(
        flatten(hidden, 1),
        lmHeadWeight(cfg, weights, g),
        flatten(batch.labels, 0),
        vocabChunk,
        IGNORE,
      ),
  );
}

/** Options of the training graphs. */
export interface TrainGraphOptions {
  /** Compute type (default float32; float64 for gradient checks). */
  float?: "float32" | "float64";
  /** LM-head classes per chunk (default {@link DEFAULT_VOCAB_CHUNK}). */
  vocabChunk?: number;
}

/** A built training graph. */
export interface TrainGraph {
  readonly graph: Graph;
  readonly step: TrainStepGraph;
}

/** One LoRA update per step on a batch; with a gated adapter, the gate logits are a fixed input. */
export function buildLoraTrainStep(
  cfg: ModelConfig,
  weights: WeightStore,
  adapter: AdapterSpec,
  optimizer: Optimizer,
  options: TrainGraphOptions = {},
): TrainGraph {
  const g = new Graph({ name: "lora_train", float: options.float });
  const batch = batchInputs(g);
  const lora = loraInputs(g, cfg, adapter);
  const builder = new TrainStepBuilder(g);
  const { loss, backward } = lmLoss(cfg, weights, batch, lora, options.vocabChunk);
  builder.update("lora", loss, [...lora.params.values()], optimizer, { backwardFrom: backward });
  return { graph: g, step: builder.finish() };
}

/** Optimizers of the two updates of a search step. */
export interface SearchOptimizers {
  /** For the LoRA weights on the training batch (the paper: AdamW, lr 1e-4). */
  readonly lora: Optimizer;
  /** For the gate logits on the validation batch (the paper: Adam, lr 0.01). */
  readonly gates: Optimizer;
}

/**
 * The Flexora search step (first-order, one-step unrolled differentiation): inputs are a training batch
 * (`input_ids`, …), a validation batch (`val/input_ids`, …), the LoRA weights and the gate logits with their
 * optimizer slots; update groups "lora" and "gates". Output `gates` holds the gate values g = N·softmax(logits)
 * that the step used.
 */
export function buildSearchStep(
  cfg: ModelConfig,
  weights: WeightStore,
  lora: LoraConfig,
  optimizers: SearchOptimizers,
  options: TrainGraphOptions = {},
): TrainGraph {
  const g = new Graph({ name: "flexora_search", float: options.float });
  const train = batchInputs(g);
  const val = batchInputs(g, "val/");
  const binding = loraInputs(g, cfg, { config: lora, gated: true });
  const logits = g.inputs.find((v) => v.name === GATE_LOGITS)!;
  const builder = new TrainStepBuilder(g);
  const params = [...binding.params.values()];
  const trainLoss = g.scope("train", () => lmLoss(cfg, weights, train, binding, options.vocabChunk));
  const updated = builder.update("lora", trainLoss.loss, params, optimizers.lora, {
    backwardFrom: trainLoss.backward,
  });
  // The validation pass sees the updated weights; they are constants for the gate gradient (first order).
  const atUpdated = new Map([...binding.params.keys()].map((name, i) => [name, updated[i]]));
  const valLoss = g.scope(
    "val",
    () => lmLoss(cfg, weights, val, { ...binding, params: atUpdated }, options.vocabChunk),
  );
  builder.update("gates", valLoss.loss, [logits], optimizers.gates, {
    constants: updated,
    backwardFrom: valLoss.backward,
  });
  return { graph: g, step: builder.finish({ gates: gateValues(logits) }) };
}

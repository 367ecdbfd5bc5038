/**
 * Flexora's training graphs: a LoRA train step (gates, when present, held fixed), and the search step that runs
 * in one session: a LoRA update on a training batch with the gates fixed, then the gradient of a validation
 * batch's loss with respect to the gate logits at the updated LoRA weights, then the gate update.
 *
 * Batches are right-padded token ids with labels already shifted (labels[b, t] is the token after position t,
 * or -100 where no loss is taken); the loss is the model's {@link lmLoss}. Legend as in
 * {@link ../model/llama.ts}.
 *
 * @module
 */

import { add, div, mul, sub } from "../graph/build.ts";
import { gradients } from "../graph/autodiff.ts";
import type { ComputeFloat } from "../graph/dtype.ts";
import { Graph, type Value } from "../graph/graph.ts";
import type { Optimizer } from "../train/optim.ts";
import { lrInput, TrainStepBuilder, type TrainStepGraph } from "../train/step.ts";
import { globalNorm } from "../train/optim.ts";
import { lossScaleInput, unscale } from "../train/loss_scale.ts";
import { gradOutputs } from "../train/accumulate.ts";
import type { Outputs } from "../graph/serialize.ts";
import type { ModelConfig } from "../model/config.ts";
import {
  type AdapterSpec,
  GATE_LOGITS,
  type GateForm,
  gateValues,
  layerInputName,
  loraInputs,
} from "../model/graphs.ts";
import { batchInputs, lmLoss } from "../model/lm_loss.ts";
import { type LoraConfig, loraShapes } from "../model/lora.ts";
import type { WeightStore } from "../model/weights.ts";

/** Options of the training graphs. */
export interface TrainGraphOptions {
  /** Compute type (default: the weight store's, float32 unless the model was loaded otherwise). */
  float?: ComputeFloat;
  /** LM-head token blocks hold logits of this many classes per token (default `DEFAULT_VOCAB_CHUNK`). */
  vocabChunk?: number;
  /** Rows of a head weight stored in another type than the compute type cast at a time (`DEFAULT_HEAD_SLICE`). */
  headSlice?: number;
  /**
   * Start at this layer, from an input `model.layers.<l>.input` [B, T, D] (the residual stream entering it,
   * as `buildPrefixGraph` computes it) instead of the token ids; only for adapters without LoRA below it.
   */
  fromLayer?: number;
  /**
   * Per-layer activation checkpointing (default false): backward keeps each layer's input and rebuilds the
   * layer's forward from it, instead of keeping every value of the forward (see `Graph.checkpoint`).
   */
  recompute?: boolean;
}

/** Where the decoder starts: the input entering `options.fromLayer`, declared in `g`. */
function startAt(g: Graph, cfg: ModelConfig, adapter: AdapterSpec, options: TrainGraphOptions) {
  const layer = options.fromLayer;
  if (layer === undefined || layer === 0) return undefined;
  const below = adapter.config.layers.filter((l) => l < layer);
  if (adapter.gated || below.length) {
    throw new Error(
      `a train graph from layer ${layer} needs every trained value at or above it, got ${
        adapter.gated ? "gates on every layer" : `LoRA on layers ${below.join(", ")}`
      }`,
    );
  }
  return { from: layer, entry: g.input(layerInputName(layer), g.float, ["B", "T", cfg.hiddenSize]) };
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
  const g = new Graph({
    name: "lora_train",
    float: options.float ?? weights.dtype,
    recompute: options.recompute,
  });
  const batch = batchInputs(g);
  const lora = loraInputs(g, cfg, adapter);
  const builder = new TrainStepBuilder(g);
  const { loss, backward } = lmLoss(cfg, weights, batch, lora, {
    vocabChunk: options.vocabChunk,
    headSlice: options.headSlice,
    lossScale: builder.lossScale,
    from: startAt(g, cfg, adapter, options),
  });
  builder.update("lora", loss, [...lora.params.values()], optimizer, { backwardFrom: backward });
  return { graph: g, step: builder.finish() };
}

/**
 * The gradient graph of gradient accumulation (see {@link ../train/accumulate.ts}): a batch and the LoRA weights
 * in, `loss` and `grad/<param>` out, for each micro-batch; `params` names the trained weights and their shapes.
 */
export function buildLoraGradGraph(
  cfg: ModelConfig,
  weights: WeightStore,
  adapter: AdapterSpec,
  options: TrainGraphOptions = {},
): { graph: Graph; outputs: Outputs; params: { name: string; shape: readonly number[] }[] } {
  const g = new Graph({
    name: "lora_grad",
    float: options.float ?? weights.dtype,
    recompute: options.recompute,
  });
  const binding = loraInputs(g, cfg, adapter);
  const lossScale = lossScaleInput(g);
  const { loss, backward } = lmLoss(cfg, weights, batchInputs(g), binding, {
    vocabChunk: options.vocabChunk,
    headSlice: options.headSlice,
    lossScale,
    from: startAt(g, cfg, adapter, options),
  });
  const outputs = gradOutputs(loss, [...binding.params.values()], backward, lossScale);
  const params = [...loraShapes(cfg, adapter.config)].map(([name, shape]) => ({ name, shape }));
  return { graph: g, outputs, params };
}

/** Optimizers of the two updates of a search step. */
export interface SearchOptimizers {
  /** For the LoRA weights on the training batch (the paper: AdamW, lr 1e-4). */
  readonly lora: Optimizer;
  /** For the gate logits on the validation batch (the paper: Adam, lr 0.01). */
  readonly gates: Optimizer;
}

/** How the gate gradient is formed. */
export type Hypergradient = "first-order" | "unrolled";

/**
 * The Flexora search step (one-step unrolled differentiation): inputs are a training batch (`input_ids`, …), a
 * validation batch (`val/input_ids`, …), the LoRA weights and the gate logits with their optimizer slots; update
 * groups "lora" and "gates". Output `gates` holds the gate values g = N·softmax(logits) that the step used, and
 * `gates/hypergradient` the gradient the gate update took. `gateForm` `cubed` scales the branches by g³.
 *
 * First order (the authors' code): the gate gradient is ∇α L_val(w′, α) at the updated weights w′, held fixed.
 * Unrolled adds DARTS' second-order term, −ξ ∇²α,w L_train(w, α) · ∇w′ L_val(w′, α), with the Hessian-vector
 * product by central differences: [∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)] / 2ε, w± = w ± ε v,
 * v = ∇w′ L_val(w′, α), ε = 0.01 / ‖v‖, and ξ the LoRA learning rate. It costs two more passes over the
 * training batch.
 */
export function buildSearchStep(
  cfg: ModelConfig,
  weights: WeightStore,
  lora: LoraConfig,
  optimizers: SearchOptimizers,
  options: TrainGraphOptions & { hypergradient?: Hypergradient; gateForm?: GateForm } = {},
): TrainGraph {
  const g = new Graph({
    name: "flexora_search",
    float: options.float ?? weights.dtype,
    recompute: options.recompute,
  });
  const train = batchInputs(g);
  const val = batchInputs(g, "val/");
  const binding = loraInputs(g, cfg, { config: lora, gated: true, gateForm: options.gateForm });
  const logits = g.inputs.find((v) => v.name === GATE_LOGITS)!;
  const builder = new TrainStepBuilder(g);
  const names = [...binding.params.keys()];
  const params = [...binding.params.values()];
  const at = (values: readonly Value[]) => ({
    ...binding,
    params: new Map(names.map((n, i) => [n, values[i]])),
  });
  const lossOptions = {
    vocabChunk: options.vocabChunk,
    headSlice: options.headSlice,
    lossScale: builder.lossScale,
  };
  const trainLoss = g.scope("train", () => lmLoss(cfg, weights, train, binding, lossOptions));
  const updated = builder.update("lora", trainLoss.loss, params, optimizers.lora, {
    backwardFrom: trainLoss.backward,
  });
  // The validation pass sees the updated weights w′, held fixed for the gate gradient.
  const valLoss = g.scope("val", () => lmLoss(cfg, weights, val, at(updated), lossOptions));
  const unrolled = options.hypergradient === "unrolled";
  const scale = builder.lossScale; // float16: every gradient below is that of the scaled loss
  const [dLogits, ...scaledV] = g.scope(
    "val.backward",
    () =>
      gradients(valLoss.backward.value, unrolled ? [logits, ...updated] : [logits], {
        constants: updated,
        seed: valLoss.backward.seed,
      }),
  );
  let hyper = dLogits;
  if (unrolled) {
    hyper = g.scope("unrolled", () => {
      const v = scale ? unscale(scaledV, scale) : scaledV; // so that ε is that of the unscaled direction
      const eps = div(0.01, globalNorm(v)); // scalar ε
      const shifted = (sign: 1 | -1) => params.map((p, i) => add(p, mul(v[i], mul(eps, sign))));
      const gateGrad = (sign: 1 | -1) => {
        const w = shifted(sign);
        const loss = g.scope(
          sign > 0 ? "plus" : "minus",
          () => lmLoss(cfg, weights, train, at(w), lossOptions),
        );
        return gradients(loss.backward.value, [logits], { constants: w, seed: loss.backward.seed })[0];
      };
      const xi = g.inputs.find((x) => x.name === lrInput("lora"))!;
      const hvp = div(sub(gateGrad(1), gateGrad(-1)), mul(eps, 2));
      return sub(dLogits, mul(hvp, xi));
    });
  }
  builder.update("gates", valLoss.loss, [logits], optimizers.gates, { gradients: [hyper] });
  const hypergradient = scale ? unscale([hyper], scale)[0] : hyper;
  return {
    graph: g,
    step: builder.finish({ gates: gateValues(logits), "gates/hypergradient": hypergradient }),
  };
}

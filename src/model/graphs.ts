/**
 * The inference graphs of a model: a step graph (prefill and decode with a KV cache) and a scoring graph
 * (per-token log-likelihoods). LoRA weights and gates are graph inputs, so an adapter is swapped by feeding other
 * tensors to the same session.
 *
 * Input names follow Hugging Face: `input_ids`, `position_ids`, `attention_mask`, `past_key_values.{l}.key`.
 * Graphs compute in the weight store's type unless told otherwise; LoRA weights and gate logits are inputs of
 * the wide type (float32 under float16), the KV cache is in the compute type, logits and log-likelihoods come
 * out wide. Legend as in {@link ./llama.ts}.
 *
 * @module
 */

import { flatten, gather, mul, reshape, softmax } from "../graph/build.ts";
import type { ComputeFloat } from "../graph/dtype.ts";
import { Graph, type Value } from "../graph/graph.ts";
import type { Outputs } from "../graph/serialize.ts";
import type { ModelConfig } from "./config.ts";
import { decoder, type DecoderInputs, type KvPair, lmHead, lmHeadWeight, type LoraBinding } from "./llama.ts";
import { tokenLogprobs } from "./lm_loss.ts";
import { type LoraConfig, loraShapes } from "./lora.ts";
import type { WeightStore } from "./weights.ts";

/** Name of the gate-logits input [L]. */
export const GATE_LOGITS = "flexora.gate_logits";

/** A built graph and its named outputs. */
export interface BuiltGraph {
  readonly graph: Graph;
  readonly outputs: Outputs;
}

/**
 * How a layer's gate g_l = N·softmax(logits)_l scales its LoRA branches: by g_l (`linear`, the paper's formula)
 * or by g_l³ (`cubed`, what the Flexora authors' hooks apply).
 */
export type GateForm = "linear" | "cubed";

/** What an adapter contributes to a graph: its config and whether per-layer gates are applied. */
export interface AdapterSpec {
  readonly config: LoraConfig;
  /** Add a gate-logits input and multiply each layer's branches by its gate (in `gateForm`). */
  readonly gated?: boolean;
  /** How the gate scales the branches (default `linear`). */
  readonly gateForm?: GateForm;
}

/** Options of the inference graphs. */
export interface GraphBuildOptions {
  /** Compute type (default: the weight store's, float32 unless the model was loaded otherwise). */
  float?: ComputeFloat;
}

/**
 * Scoring's default LM-head chunk: token blocks holding 2048 classes' worth of logits (smaller than training's,
 * since scoring runs beside a trainer session's memory at the end of each epoch: for 16 sequences of 200 tokens
 * and V = 32000, 16 blocks of [200, V], 26 MB each, instead of 4 of 102 MB).
 */
export const SCORING_VOCAB_CHUNK = 2048;

/** Options of {@link buildScoringGraph}. */
export interface ScoringGraphOptions extends GraphBuildOptions {
  /** The LM head's token blocks hold logits of this many classes per token (default {@link SCORING_VOCAB_CHUNK}). */
  vocabChunk?: number;
  /** Rows of a head weight stored in another type than the compute type cast at a time (`DEFAULT_HEAD_SLICE`). */
  headSlice?: number;
}

/**
 * Declares LoRA parameter inputs (and gate logits) in the graph's wide type, the master copy mixed precision
 * trains, and returns the binding the decoder takes.
 */
export function loraInputs(g: Graph, cfg: ModelConfig, adapter: AdapterSpec): LoraBinding {
  const params = new Map<string, Value>();
  for (const [name, shape] of loraShapes(cfg, adapter.config)) {
    params.set(name, g.input(name, g.wide, shape));
  }
  if (!adapter.gated) return { config: adapter.config, params };
  return {
    config: adapter.config,
    params,
    gates: gateScale(gateValues(g.input(GATE_LOGITS, g.wide, [cfg.numLayers])), adapter.gateForm),
  };
}

/** What the branches are multiplied by: the gates g [L], or g³ for the `cubed` form. */
export function gateScale(gates: Value, form: GateForm = "linear"): Value {
  return form === "cubed" ? mul(mul(gates, gates), gates) : gates;
}

/** Gates g = N·softmax(logits): all 1 when the logits are equal. */
export function gateValues(logits: Value): Value {
  return mul(softmax(logits, 0), Number(logits.shape[0]));
}

/** Token inputs without a cache: ids, positions and mask, all [B, T] int64. */
export function tokenInputs(g: Graph): DecoderInputs {
  return {
    ids: g.input("input_ids", "int64", ["B", "T"]),
    positions: g.input("position_ids", "int64", ["B", "T"]),
    keyMask: g.input("attention_mask", "int64", ["B", "T"]),
  };
}

/** The step graph's KV-cache outputs: what generation feeds back, and keeps on the device (`deviceOutputs`). */
export function kvOutputs(cfg: ModelConfig): string[] {
  return Array.from({ length: cfg.numLayers }, (_, l) => [`present.${l}.key`, `present.${l}.value`]).flat();
}

/**
 * Prefill and decode in one graph: T new tokens after P cached ones (P = 0 to prefill). Outputs `logits` [B, V]
 * at the flat positions `last_index` [B] (row b's last real token is b·T + length_b − 1) and
 * `present.{l}.key|value` [B, KV, P+T, Dh].
 */
export function buildStepGraph(
  cfg: ModelConfig,
  weights: WeightStore,
  adapter?: AdapterSpec,
  options: GraphBuildOptions = {},
): BuiltGraph {
  const g = new Graph({ name: "step", float: options.float ?? weights.dtype });
  const kvShape = ["B", cfg.numKvHeads, "P", cfg.headDim];
  const past: KvPair[] = Array.from({ length: cfg.numLayers }, (_, l) => ({
    key: g.input(`past_key_values.${l}.key`, g.float, kvShape),
    value: g.input(`past_key_values.${l}.value`, g.float, kvShape),
  }));
  const ids = g.input("input_ids", "int64", ["B", "T"]);
  const inputs: DecoderInputs = {
    ids,
    positions: g.input("position_ids", "int64", ["B", "T"]),
    keyMask: g.input("attention_mask", "int64", ["B", "P+T"]),
    past,
  };
  const lastIndex = g.input("last_index", "int64", ["B"]);
  const lora = adapter ? loraInputs(g, cfg, adapter) : undefined;
  const { hidden, present } = decoder(cfg, weights, inputs, lora);
  const last = gather(flatten(hidden, 1), lastIndex); // [B, D]
  const outputs: Record<string, Value> = { logits: lmHead(cfg, weights, last) };
  present.forEach((kv, l) => {
    outputs[`present.${l}.key`] = kv.key;
    outputs[`present.${l}.value`] = kv.value;
  });
  return { graph: g, outputs };
}

/**
 * Per-token log-likelihoods: output `token_logprobs` [B, T] holds log p(targets[b, t] | tokens ≤ t), and 0 where
 * the target is -100 (ignored). The LM head runs in token blocks ({@link tokenLogprobs}): no [B·T, V] logits.
 */
export function buildScoringGraph(
  cfg: ModelConfig,
  weights: WeightStore,
  adapter?: AdapterSpec,
  options: ScoringGraphOptions = {},
): BuiltGraph {
  const g = new Graph({ name: "score", float: options.float ?? weights.dtype });
  const inputs = tokenInputs(g);
  const targets = g.input("targets", "int64", ["B", "T"]);
  const lora = adapter ? loraInputs(g, cfg, adapter) : undefined;
  const { hidden } = decoder(cfg, weights, inputs, lora);
  const lp = g.scope(
    "lm_head",
    () =>
      tokenLogprobs(flatten(hidden, 1), lmHeadWeight(cfg, weights, g), flatten(targets, 0), {
        chunk: options.vocabChunk ?? SCORING_VOCAB_CHUNK,
        slice: options.headSlice,
      }),
  ); // [B*T]
  return { graph: g, outputs: { token_logprobs: reshape(lp, ["B", "T"]) } };
}

/** Name of the input (or output) holding the residual stream entering layer `l`, [B, T, D]. */
export function layerInputName(l: number): string {
  return `model.layers.${l}.input`;
}

/**
 * The frozen part of a model below `layer`: token inputs in, output {@link layerInputName}(layer), the residual
 * stream entering that layer [B, T, D]. With no trainable value below `layer` it is a fixed function of the
 * tokens, which a training graph that starts at `layer` can take as an input instead of recomputing it.
 */
export function buildPrefixGraph(
  cfg: ModelConfig,
  weights: WeightStore,
  layer: number,
  options: GraphBuildOptions = {},
): BuiltGraph {
  const g = new Graph({ name: "prefix", float: options.float ?? weights.dtype });
  const { hidden } = decoder(cfg, weights, tokenInputs(g), undefined, { until: layer });
  return { graph: g, outputs: { [layerInputName(layer)]: hidden } };
}

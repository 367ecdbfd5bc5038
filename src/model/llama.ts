/**
 * The Llama-family decoder (llama, mistral, qwen2) as graph code: RMSNorm, rotate-half RoPE, grouped-query
 * attention with an optional KV cache, SwiGLU, and LoRA branches scaled by per-layer gates.
 *
 * Mixed precision (a float16 graph): activations and the matrix products are float16; RMSNorm's statistics,
 * the attention scores' masking and softmax, RoPE's angles and the LM head's logits are in the graph's wide type
 * (float32), as Hugging Face Llama computes them under float16; LoRA weights and gates arrive wide (the master
 * copy) and are cast down where they meet activations. In float32 and float64 graphs every cast is a no-op.
 *
 * Legend: B batch, T new tokens, P cached tokens, S = P + T keys, D model width, H heads, KV key/value heads,
 * rep = H / KV, Dh head size, I intermediate width, V vocab, L layers, R LoRA rank.
 *
 * @module
 */

import {
  add,
  and,
  cast,
  concat,
  full,
  gather,
  greater,
  matmul,
  mul,
  reciprocal,
  reduceMean,
  reshape,
  sigmoid,
  slice,
  softmax,
  sqrt,
  transpose,
  transposeLast2,
  trilu,
  unsqueeze,
  where,
} from "../graph/build.ts";
import type { Graph, Value } from "../graph/graph.ts";
import type { Dim } from "../graph/shape.ts";
import type { ModelConfig } from "./config.ts";
import { headLogits } from "./lm_head.ts";
import { type LoraConfig, loraNames, loraScale, modulePath, type TargetModule } from "./lora.ts";
import { applyRope, ropeTables } from "./rope.ts";
import type { WeightStore } from "./weights.ts";

/** A layer's cached keys and values, each [B, KV, P, Dh]. */
export interface KvPair {
  readonly key: Value;
  readonly value: Value;
}

/** Inputs of one decoder pass. */
export interface DecoderInputs {
  /** Token ids [B, T] (int64). */
  readonly ids: Value;
  /** Positions [B, T] (int64). */
  readonly positions: Value;
  /** 1 where key s is a real token, 0 for padding, [B, S] (int64); S = P + T. */
  readonly keyMask: Value;
  /** Cached keys and values per layer. */
  readonly past?: readonly KvPair[];
}

/** LoRA parameters (graph values by name) and optional gate values [L]. */
export interface LoraBinding {
  readonly config: LoraConfig;
  readonly params: ReadonlyMap<string, Value>;
  /** Per-layer multiplier of the branches [L]: the gate g_l (or g_l³, see `GateForm`). */
  readonly gates?: Value;
}

/** What a decoder pass computes. */
export interface DecoderOutputs {
  /** Final-normed hidden states [B, T, D] (the residual stream entering `until` for a pass that stops early). */
  readonly hidden: Value;
  /** Keys and values of past and new tokens per layer, [B, KV, S, Dh]. */
  readonly present: KvPair[];
}

/** Large negative score for masked keys: exp() of it is 0 in float32 and float64 (scores are never float16). */
const MASKED = -1e9;

/** RMSNorm over the last axis: x / √(mean(x²) + ε) · w, normalised in the wide type and cast back before · w. */
export function rmsNorm(x: Value, w: Value, eps: number): Value {
  const xw = cast(x, x.graph.wide);
  return mul(cast(mul(xw, reciprocal(sqrt(add(reduceMean(mul(xw, xw), [-1], true), eps)))), x.dtype), w);
}

/**
 * Which layers a decoder pass runs: [from, until). A pass from a layer above 0 starts from `entry`, the residual
 * stream entering that layer [B, T, D] (no embedding); a pass that stops before the last layer returns the
 * residual stream entering `until`, not normed. The token inputs still give positions, mask and [B, T].
 */
export interface LayerSpan {
  /** First layer run (default 0). */
  readonly from?: number;
  /** The residual stream entering `from`, [B, T, D]; required when `from` is above 0. */
  readonly entry?: Value;
  /** The layer the pass stops before (default: all layers, then the final norm). */
  readonly until?: number;
}

/** The decoder's computation, from token ids (or a layer's input) to final-normed hidden states. */
export function decoder(
  cfg: ModelConfig,
  weights: WeightStore,
  inputs: DecoderInputs,
  lora?: LoraBinding,
  span: LayerSpan = {},
): DecoderOutputs {
  const g = inputs.ids.graph;
  const { from = 0, until = cfg.numLayers } = span;
  if (
    !Number.isInteger(from) || !Number.isInteger(until) || from < 0 || until > cfg.numLayers || from > until
  ) {
    throw new Error(`a decoder pass runs layers [from, until) of ${cfg.numLayers}, got [${from}, ${until})`);
  }
  if (from > 0 && !span.entry) throw new Error(`a decoder pass from layer ${from} needs the layer's input`);
  const w = (name: string, after?: Value) => weights.weight(g, name, after);
  const [B, T] = inputs.ids.shape;
  const tables = g.scope("model.rotary_emb", () => ropeTables(inputs.positions, cfg));
  const allowed = g.scope("model.mask", () => attentionMask(cfg, inputs));
  const scale = lora ? loraScale(lora.config) : 0;

  let x = from > 0 ? span.entry! : g.scope("model.embed_tokens", () => {
    // The rows are cast, not the table: a 16-bit table's float32 copy [V, D] would live from here to the LM head.
    return cast(gather(weights.stored(g, "model.embed_tokens.weight"), inputs.ids), g.float); // [B, T, D]
  });
  const present: KvPair[] = [];
  for (let l = from; l < until; l++) {
    const prefix = `model.layers.${l}`;
    const proj = (module: TargetModule, h: Value, bias: boolean): Value => {
      const path = modulePath(l, module);
      return g.scope(path, () => {
        let y = matmul(h, transpose(w(`${path}.weight`, h))); // W [out, in], cast (if 16-bit) once h is there
        if (bias) y = add(y, w(`${path}.bias`));
        const names = loraNames(l, module);
        const a = lora?.params.get(names.a), b = lora?.params.get(names.b);
        if (!a || !b) return y;
        const low = (v: Value) => cast(v, h.dtype); // the wide master copy, cast to the compute type
        let k: Value | number = scale;
        if (lora!.gates) k = low(mul(slice(lora!.gates, [l], [l + 1], [0]), scale)); // [1]
        return add(y, mul(matmul(matmul(h, transpose(low(a))), transpose(low(b))), k));
      });
    };
    // A checkpoint: with the graph's `recompute` option, backward rebuilds the layer from its input.
    x = g.checkpoint(() =>
      g.scope(prefix, () => {
        const h = g.scope(
          "input_layernorm",
          () => rmsNorm(x, w(`${prefix}.input_layernorm.weight`), cfg.rmsNormEps),
        );
        const attn = g.scope(
          "self_attn",
          () =>
            attention(
              cfg,
              h,
              [B, T],
              tables,
              allowed,
              inputs.past?.[l],
              (m, v) => proj(m, v, m === "o_proj" ? cfg.oBias : cfg.qkvBias),
            ),
        );
        present.push(attn.present);
        const r = add(x, attn.out);
        const h2 = g.scope(
          "post_attention_layernorm",
          () => rmsNorm(r, w(`${prefix}.post_attention_layernorm.weight`), cfg.rmsNormEps),
        );
        const mlp = g.scope("mlp", () => {
          const gate = proj("gate_proj", h2, cfg.mlpBias);
          return proj(
            "down_proj",
            mul(mul(gate, sigmoid(gate)), proj("up_proj", h2, cfg.mlpBias)),
            cfg.mlpBias,
          );
        });
        return add(r, mlp);
      })
    );
  }
  if (until < cfg.numLayers) return { hidden: x, present };
  const hidden = g.scope("model.norm", () => rmsNorm(x, w("model.norm.weight"), cfg.rmsNormEps));
  return { hidden, present };
}

/**
 * Which keys each query may see: causal over past + new tokens (key s ≤ P + t), within the sliding window when
 * the model has one (s > P + t − W), and not padding. [B, 1, 1, T, S] bool.
 */
function attentionMask(cfg: ModelConfig, inputs: DecoderInputs): Value {
  const g = inputs.ids.graph;
  const T = inputs.ids.shape[1];
  const S = inputs.keyMask.shape[1];
  const pastLen = inputs.past?.[0]
    ? reshape(g.shapeTensor([inputs.past[0].key.shape[2]]), [])
    : g.scalar(0, "int64"); // P as an int64 scalar
  const ones = full(g, [T, S], 1, g.wide);
  let allowed = greater(trilu(ones, false, pastLen), 0); // [T, S]
  if (cfg.slidingWindow !== null) {
    allowed = and(allowed, greater(trilu(ones, true, add(pastLen, 1 - cfg.slidingWindow)), 0));
  }
  const keys = unsqueeze(cast(inputs.keyMask, "bool"), [1, 2, 3]); // [B, 1, 1, 1, S]
  return and(allowed, keys);
}

/** Grouped-query attention with RoPE; returns the output [B, T, D] and the keys/values for the cache. */
function attention(
  cfg: ModelConfig,
  h: Value,
  [B, T]: Dim[],
  tables: { cos: Value; sin: Value },
  allowed: Value,
  past: KvPair | undefined,
  proj: (module: TargetModule, h: Value) => Value,
): { out: Value; present: KvPair } {
  const { numHeads: H, numKvHeads: KV, headDim: Dh } = cfg;
  const heads = (x: Value, n: number) => transpose(reshape(x, [B, T, n, Dh]), [0, 2, 1, 3]); // [B, n, T, Dh]
  const q = applyRope(heads(proj("q_proj", h), H), tables);
  let k = applyRope(heads(proj("k_proj", h), KV), tables);
  let v = heads(proj("v_proj", h), KV);
  if (past) {
    k = concat([past.key, k], 2); // [B, KV, S, Dh]
    v = concat([past.value, v], 2);
  }
  // Queries grouped by the key/value head they share: [B, KV, rep, T, Dh] against [B, KV, 1, S, Dh].
  const q5 = reshape(q, [B, KV, H / KV, T, Dh]);
  const qk = cast(matmul(q5, transposeLast2(unsqueeze(k, [2]))), h.graph.wide);
  const scores = mul(qk, 1 / Math.sqrt(Dh)); // [B, KV, rep, T, S], wide
  const probs = cast(softmax(where(allowed, scores, MASKED)), h.dtype);
  const ctx = matmul(probs, unsqueeze(v, [2])); // [B, KV, rep, T, Dh]
  const merged = reshape(transpose(reshape(ctx, [B, H, T, Dh]), [0, 2, 1, 3]), [B, T, H * Dh]);
  return { out: proj("o_proj", merged), present: { key: k, value: v } };
}

/**
 * The LM head's weight [V, D] as stored (the tied embedding or `lm_head.weight`): the head's products cast a
 * 16-bit one a vocabulary slice at a time ({@link headLogits}), never whole.
 */
export function lmHeadWeight(cfg: ModelConfig, weights: WeightStore, g: Graph): Value {
  return weights.stored(g, cfg.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
}

/** Logits [..., V] from hidden states, in the graph's wide type. */
export function lmHead(cfg: ModelConfig, weights: WeightStore, hidden: Value): Value {
  const g = hidden.graph;
  return g.scope("lm_head", () => cast(headLogits(hidden, lmHeadWeight(cfg, weights, g)), g.wide));
}

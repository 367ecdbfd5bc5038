/**
 * Causal-LM cross-entropy with the LM head computed in token blocks, so logits [N, V] are never held whole (one
 * unblocked head with a 49k vocabulary took 5.2 GB), and each block's logits are computed once.
 *
 * The tokens are split into K = ⌈V / chunk⌉ blocks of ⌈N / K⌉ rows (N = B·T is only known at run time, so the
 * block sizes are computed in the graph), which makes a block's logits as large as an [N, chunk] slab. Each
 * block computes its logits, their log-sum-exp, its rows' losses and, right away, its rows' share of the
 * backward: (softmax − onehot) · rowWeight, multiplied by the head's weight into d hidden for those rows. So the
 * backward needs no second product with the head (the vocabulary chunks this replaced recomputed every logit,
 * +11 % of a 100M model's MatMul FLOPs), and a block's logits die before the next block's are made. The backward
 * is built here rather than by the autodiff driver; the driver continues from the hidden states with that
 * gradient as its seed.
 *
 * Mixed precision: the logits' matrix products run in the compute type (float16), then the logits, softmax,
 * log-sum-exp and loss are in the graph's wide type (float32); the backward's (softmax − onehot) · rowWeight is
 * formed in float32 and multiplied by the loss scale there, before it is cast down for the product with W.
 *
 * W is passed as stored: a weight stored in another type than the compute type (16-bit base weights) is cast
 * one vocabulary slice at a time inside each block's products ({@link headLogits}, {@link headBackward}), never
 * whole, and the blocks then run one after the other (a block's first cast waits for the previous block's end).
 *
 * Legend: N tokens, D width, V vocab, K blocks, Nk rows of block k.
 *
 * @module
 */

import {
  add,
  cast,
  concat,
  div,
  equal,
  exp,
  flatten,
  gather,
  log,
  minimum,
  mul,
  neg,
  not,
  pad,
  reduceMax,
  reduceSum,
  softmaxCrossEntropy,
  squeeze,
  sub,
  sum,
  unsqueeze,
} from "../graph/build.ts";
import type { Graph, Value } from "../graph/graph.ts";
import type { ModelConfig } from "./config.ts";
import { headBackward, headLogits } from "./lm_head.ts";
import { decoder, type DecoderInputs, type LayerSpan, lmHeadWeight, type LoraBinding } from "./llama.ts";
import type { WeightStore } from "./weights.ts";

/** Where backward starts: a value and the gradient flowing into it. */
export interface BackwardStart {
  readonly value: Value;
  readonly seed: Value;
}

/** A loss and where its backward starts. */
export interface LossWithBackward {
  readonly loss: Value;
  readonly backward: BackwardStart;
}

/** Default chunk: 8192 classes' worth of logits per block (2048 tokens: a 64 MiB float32 block). */
export const DEFAULT_VOCAB_CHUNK = 8192;

/** Options of {@link lmHeadLoss}. */
export interface LmHeadLossOptions {
  /**
   * Bounds a block's logits to those of `chunk` classes for every token (default {@link DEFAULT_VOCAB_CHUNK}):
   * the tokens are split into ⌈V / chunk⌉ blocks.
   */
  chunk?: number;
  /** Label that takes no loss (default -100). */
  ignoreIndex?: number;
  /** A scalar of the wide type: the backward seed is that of the loss times it (float16 loss scaling). */
  lossScale?: Value;
  /**
   * Rows of a weight stored in another type than the compute type cast at a time (default
   * `DEFAULT_HEAD_SLICE`, see {@link headLogits}).
   */
  slice?: number;
}

/**
 * Mean cross-entropy of hidden [N, D] · weightᵀ (weight [V, D] as stored) against labels [N] (ignoreIndex: no
 * loss), in the graph's wide type. With V ≤ `chunk` and the weight in the compute type this is the fused
 * SoftmaxCrossEntropyLoss op and ordinary autodiff.
 */
export function lmHeadLoss(
  hidden: Value,
  weight: Value,
  labels: Value,
  options: LmHeadLossOptions = {},
): LossWithBackward {
  const g = hidden.graph;
  const { chunk = DEFAULT_VOCAB_CHUNK, ignoreIndex = -100, lossScale, slice: rows } = options;
  const V = Number(weight.shape[0]);
  if (!Number.isInteger(chunk) || chunk <= 0) {
    throw new Error(`'vocabChunk' must be a positive integer, got ${chunk}`);
  }
  const logits = (h: Value, after?: Value) => cast(headLogits(h, weight, { rows, after }), g.wide); // h·Wᵀ, wide
  const K = Math.ceil(V / chunk);
  // (Autodiff would keep the casts of a weight stored in another type alive from the forward to the backward.)
  if (K === 1 && weight.dtype === hidden.dtype) {
    const { loss } = softmaxCrossEntropy(logits(hidden), labels, { ignoreIndex });
    return { loss, backward: { value: loss, seed: lossScale ?? g.scalar(1, loss.dtype) } };
  }
  const valid = cast(not(equal(labels, ignoreIndex)), g.wide); // [N]
  const rowWeight = div(valid, reduceSum(valid, [0])); // [N]: 1/count where a label counts
  const gradWeight = lossScale ? mul(rowWeight, lossScale) : rowWeight; // [N]
  const classes = g.constant([...Array(V).keys()], [1, V], "int64"); // [1, V]
  const blocks = tokenBlocks(hidden, K);
  const [h, y, w, dw] = [hidden, labels, rowWeight, gradWeight].map(blocks.split);

  const parts: { loss: Value; dHidden: Value }[] = [];
  for (const [k, hk] of h.entries()) {
    parts.push(g.scope(`block_${k}`, () => {
      const l = logits(hk, parts.at(-1)?.dHidden); // [Nk, V], its first cast after the previous block's end
      const { e, s, onehot, picked, lse } = blockSoftmax(l, y[k], classes);
      const rowLoss = squeeze(sub(lse, picked), [1]); // [Nk]
      const loss = reduceSum(mul(rowLoss, w[k]), [0]);
      const dLogits = mul(sub(div(e, s), onehot), unsqueeze(dw[k], [1])); // [Nk, V]
      return { loss, dHidden: headBackward(cast(dLogits, hidden.dtype), weight, { rows }) }; // [Nk, D]
    }));
  }
  const dHidden = g.scope("backward", () => blocks.join(parts.map((p) => p.dHidden)));
  return { loss: sum(...parts.map((p) => p.loss)), backward: { value: hidden, seed: dHidden } };
}

/**
 * Log-probabilities [N] of `targets` [N] under hidden [N, D] · weightᵀ (weight [V, D] as stored, see
 * {@link headLogits}), in the graph's wide type, 0 where a target is `ignoreIndex`: scoring's head. Computed in
 * token blocks as {@link lmHeadLoss} is, so that no [N, V] logits are held whole (scoring a few hundred rows
 * beside a training session's memory would otherwise set a run's peak); with V ≤ `chunk`, one fused
 * SoftmaxCrossEntropyLoss.
 */
export function tokenLogprobs(
  hidden: Value,
  weight: Value,
  targets: Value,
  options: Omit<LmHeadLossOptions, "lossScale"> = {},
): Value {
  const g = hidden.graph;
  const { chunk = DEFAULT_VOCAB_CHUNK, ignoreIndex = -100, slice: rows } = options;
  const V = Number(weight.shape[0]);
  const logits = (h: Value, after?: Value) => cast(headLogits(h, weight, { rows, after }), g.wide); // h·Wᵀ, wide
  const K = Math.ceil(V / chunk);
  if (K === 1) {
    return neg(softmaxCrossEntropy(logits(hidden), targets, { ignoreIndex, reduction: "none" }).loss);
  }
  const classes = g.constant([...Array(V).keys()], [1, V], "int64"); // [1, V]
  const blocks = tokenBlocks(hidden, K);
  const [h, y] = [hidden, targets].map(blocks.split);
  const parts: Value[] = [];
  for (const [k, hk] of h.entries()) {
    parts.push(g.scope(`block_${k}`, () => {
      const l = logits(hk, parts.at(-1)); // [Nk, V]
      const { picked, lse } = blockSoftmax(l, y[k], classes);
      const valid = cast(not(equal(unsqueeze(y[k], [1]), ignoreIndex)), g.wide); // [Nk, 1]
      return mul(sub(picked, lse), valid); // [Nk, 1]
    }));
  }
  return squeeze(blocks.join(parts), [1]);
}

/**
 * One token block's softmax over its logits l [Nk, V] (wide) with labels y [Nk]: e = exp(l − max) and its row
 * sums s, the labels' one-hot rows, the labels' logits (`picked`) and the rows' log-sum-exp (`lse`), so that a
 * label's log-probability is picked − lse. Shared by the loss ({@link lmHeadLoss}) and scoring
 * ({@link tokenLogprobs}).
 */
function blockSoftmax(l: Value, y: Value, classes: Value) {
  const m = reduceMax(l, [1], true); // [Nk, 1]
  const e = exp(sub(l, m)); // [Nk, V]
  const s = reduceSum(e, [1], true); // [Nk, 1]
  const onehot = cast(equal(unsqueeze(y, [1]), classes), l.dtype); // [Nk, V]
  const picked = reduceSum(mul(l, onehot), [1], true); // [Nk, 1]
  return { e, s, onehot, picked, lse: add(m, log(s)) };
}

/**
 * Rows of each of K token blocks of N tokens, as the graph computes them at run time: ⌈N / K⌉ each, the last
 * blocks shorter or empty.
 */
export function tokenBlockSizes(n: number, K: number): number[] {
  const size = Math.ceil(n / K);
  return [...Array(K).keys()].map((k) => Math.min(n - Math.min(k * size, n), size));
}

/**
 * K blocks of consecutive rows of values [N, ...]: `split` cuts a value into them, `join` puts blocks shaped
 * [Nk, ...] (rank 2 at least) back into one [N, ...] value. Sizes are read at run time ({@link tokenBlockSizes});
 * each block's row count is a symbol of its own, `<hidden>/rows<k>`.
 */
function tokenBlocks(hidden: Value, K: number) {
  const g = hidden.graph;
  const N = hidden.shape[0];
  const n = g.shapeTensor([N]); // [1]
  const size = div(add(n, K - 1), K); // [1]: ⌈N / K⌉
  const starts = minimum(mul(g.constant([...Array(K).keys()], [K], "int64"), size), n); // [K]
  const sizes = minimum(sub(n, starts), size); // [K]
  const dims = [...Array(K).keys()].map((k) => `${hidden.name}/rows${k}`);
  const at = (v: Value, k: number) => gather(v, g.constant([k], [1], "int64")); // [1]
  return {
    split: (v: Value): Value[] => g.apply("Split", [v, sizes], { axis: 0, sizes: dims }),
    join: (parts: Value[]): Value => {
      const rest = parts[0].shape.slice(1);
      const zeros = g.constant(rest.map(() => 0), [rest.length], "int64");
      return sum(...parts.map((p, k) => {
        const before = at(starts, k), after = sub(sub(n, before), at(sizes, k));
        return pad(p, concat([before, zeros, after, zeros], 0), [N, ...rest]);
      }));
    },
  };
}

/** Label value that takes no loss. */
export const IGNORE = -100;

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

/** Options of {@link lmLoss}. */
export interface LmLossOptions {
  /** LM-head token blocks hold logits of this many classes per token (default {@link DEFAULT_VOCAB_CHUNK}). */
  vocabChunk?: number;
  /** Rows of a head weight stored in another type than the compute type cast at a time (`DEFAULT_HEAD_SLICE`). */
  headSlice?: number;
  /** Float16 loss scale (a wide scalar): backward's seed is that of the loss times it. */
  lossScale?: Value;
  /** Start the decoder at a layer, from its input (see {@link LayerSpan}); default: from the token ids. */
  from?: Pick<LayerSpan, "from" | "entry">;
}

/**
 * Mean cross-entropy of the next-token predictions over labels that are not ignored, with the LM head in
 * token blocks (see {@link lmHeadLoss}).
 */
export function lmLoss(
  cfg: ModelConfig,
  weights: WeightStore,
  batch: { inputs: DecoderInputs; labels: Value },
  lora?: LoraBinding,
  options: LmLossOptions = {},
): LossWithBackward {
  const g = batch.labels.graph;
  const { hidden } = decoder(cfg, weights, batch.inputs, lora, options.from);
  return g.scope(
    "lm_head",
    () =>
      lmHeadLoss(flatten(hidden, 1), lmHeadWeight(cfg, weights, g), flatten(batch.labels, 0), {
        chunk: options.vocabChunk ?? DEFAULT_VOCAB_CHUNK,
        ignoreIndex: IGNORE,
        lossScale: options.lossScale,
        slice: options.headSlice,
      }),
  );
}

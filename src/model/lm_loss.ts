/**
 * Causal-LM cross-entropy with the LM head computed in vocabulary chunks, so logits [N, V] are never held whole
 * for backward (one unchunked block with a 49k vocabulary took 5.2 GB).
 *
 * Forward keeps per row only the running maximum, the sum of exponentials and the label's logit. Backward is
 * built here rather than by the autodiff driver: each chunk's logits are recomputed, transposed ([C, N] from
 * W_c · hᵀ, so onnxruntime's common-subexpression elimination cannot merge them with the forward's [N, C] and
 * keep those alive), turned into (softmax − onehot) · weight, and multiplied back into d hidden. The driver then
 * continues from the hidden states with that gradient as its seed.
 *
 * Chunks split the vocabulary, not the tokens: the token count N = B·T is only known at run time.
 *
 * Mixed precision: the logits' matrix products run in the compute type (float16), then the logits, softmax,
 * log-sum-exp and loss are in the graph's wide type (float32); the backward's (softmax − onehot) · weight is
 * formed in float32 and multiplied by the loss scale there, before it is cast down for the product with W.
 *
 * Legend: N tokens, D width, V vocab, C chunk.
 *
 * @module
 */

import {
  add,
  cast,
  div,
  equal,
  exp,
  log,
  matmul,
  maximum,
  mul,
  not,
  reduceMax,
  reduceSum,
  reshape,
  slice,
  softmaxCrossEntropy,
  squeeze,
  sub,
  sum,
  transpose,
  unsqueeze,
} from "../graph/build.ts";
import type { Value } from "../graph/graph.ts";

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

/** Default chunk: 8192 classes (a [2048, 8192] float32 block is 64 MiB). */
export const DEFAULT_VOCAB_CHUNK = 8192;

/** Options of {@link lmHeadLoss}. */
export interface LmHeadLossOptions {
  /** Classes per chunk (default {@link DEFAULT_VOCAB_CHUNK}). */
  chunk?: number;
  /** Label that takes no loss (default -100). */
  ignoreIndex?: number;
  /** A scalar of the wide type: the backward seed is that of the loss times it (float16 loss scaling). */
  lossScale?: Value;
}

/**
 * Mean cross-entropy of hidden [N, D] · weightᵀ (weight [V, D]) against labels [N] (ignoreIndex: no loss), in
 * the graph's wide type. With V ≤ `chunk` this is the fused SoftmaxCrossEntropyLoss op and ordinary autodiff.
 */
export function lmHeadLoss(
  hidden: Value,
  weight: Value,
  labels: Value,
  options: LmHeadLossOptions = {},
): LossWithBackward {
  const g = hidden.graph;
  const { chunk = DEFAULT_VOCAB_CHUNK, ignoreIndex = -100, lossScale } = options;
  const V = Number(weight.shape[0]);
  if (!Number.isInteger(chunk) || chunk <= 0) {
    throw new Error(`'vocabChunk' must be a positive integer, got ${chunk}`);
  }
  const logits = (a: Value, b: Value) => cast(matmul(a, transpose(b)), g.wide); // a·bᵀ, widened
  if (V <= chunk) {
    const { loss } = softmaxCrossEntropy(logits(hidden, weight), labels, { ignoreIndex });
    return { loss, backward: { value: loss, seed: lossScale ?? g.scalar(1, loss.dtype) } };
  }
  const N = hidden.shape[0];
  const bounds: [number, number][] = [];
  for (let c0 = 0; c0 < V; c0 += chunk) bounds.push([c0, Math.min(c0 + chunk, V)]);
  const valid = cast(not(equal(labels, ignoreIndex)), g.wide); // [N]
  const rowWeight = div(valid, reduceSum(valid, [0])); // [N]: 1/count where a label counts
  const classes = ([c0, c1]: [number, number]) =>
    g.constant([...Array(c1 - c0).keys()].map((i) => c0 + i), [c1 - c0], "int64");
  const rows = ([c0, c1]: [number, number]) => slice(weight, [c0], [c1], [0]); // [C, D]

  // Forward: per chunk, row max, Σ exp(l − max) and the label's logit; then a log-sum-exp across chunks.
  const parts = bounds.map((b) =>
    g.scope(`chunk_${b[0]}`, () => {
      const l = logits(hidden, rows(b)); // [N, C]
      const m = reduceMax(l, [1], true); // [N, 1]
      const onehot = cast(equal(unsqueeze(labels, [1]), classes(b)), g.wide); // [N, C]
      return { m, s: reduceSum(exp(sub(l, m)), [1], true), picked: reduceSum(mul(l, onehot), [1], true) };
    })
  );
  const M = parts.map((p) => p.m).reduce((a, b) => maximum(a, b)); // [N, 1]
  const lse = add(M, log(sum(...parts.map((p) => mul(p.s, exp(sub(p.m, M))))))); // [N, 1]
  const rowLoss = squeeze(sub(lse, sum(...parts.map((p) => p.picked))), [1]); // [N]
  const loss = reduceSum(mul(rowLoss, rowWeight), [0]);

  // Backward: d hidden = Σ_c ((softmax_c − onehot_c) · rowWeight) W_c, recomputed chunk by chunk.
  const lseRow = reshape(lse, [1, N]); // [1, N]
  const weightRow = reshape(lossScale ? mul(rowWeight, lossScale) : rowWeight, [1, N]);
  const labelRow = unsqueeze(labels, [0]); // [1, N]
  const dHidden = sum(...bounds.map((b) =>
    g.scope(`chunk_${b[0]}.backward`, () => {
      const w = rows(b);
      const lT = logits(w, hidden); // [C, N]
      const onehotT = cast(equal(unsqueeze(classes(b), [1]), labelRow), g.wide); // [C, N]
      const gradT = mul(sub(exp(sub(lT, lseRow)), onehotT), weightRow); // [C, N]
      return matmul(transpose(cast(gradT, hidden.dtype)), w); // [N, D]
    })
  ));
  return { loss, backward: { value: hidden, seed: dHidden } };
}

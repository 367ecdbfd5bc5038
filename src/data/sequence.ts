/**
 * Token sequences (a tokenized example: its ids, and where its targets start) and batches of them as graph feeds:
 * right padding, attention mask, positions and shifted labels ({@link IGNORE} where no loss is taken).
 *
 * @module
 */

import { IGNORE } from "../model/lm_loss.ts";
import { type HostTensor, hostTensor } from "../runtime/session.ts";

export { IGNORE } from "../model/lm_loss.ts";

/** One sequence: its token ids, and from which position on its tokens are predicted (loss is taken). */
export interface Sequence {
  readonly ids: readonly number[];
  /** Index of the first token that is a target (default 1: every token after the first). */
  readonly targetFrom?: number;
}

/**
 * Feeds for `input_ids`, `position_ids`, `attention_mask` and `labels` (each [B, T], T the longest sequence):
 * labels[b, t] is ids[b][t + 1] when that token is a target, else -100. With `prefix`, names get it in front.
 */
export function batchFeeds(seqs: readonly Sequence[], padId = 0, prefix = ""): Record<string, HostTensor> {
  if (seqs.length === 0) throw new Error("a batch needs at least one sequence");
  const T = Math.max(...seqs.map((s) => s.ids.length));
  if (T === 0) throw new Error("every sequence in the batch is empty");
  const B = seqs.length, n = B * T;
  const ids = new Array<number>(n).fill(padId), pos = new Array<number>(n).fill(0);
  const mask = new Array<number>(n).fill(0), labels = new Array<number>(n).fill(IGNORE);
  seqs.forEach((s, b) => {
    const from = s.targetFrom ?? 1;
    s.ids.forEach((id, t) => {
      ids[b * T + t] = id;
      pos[b * T + t] = t;
      mask[b * T + t] = 1;
      if (t + 1 < s.ids.length && t + 1 >= from) labels[b * T + t] = s.ids[t + 1];
    });
  });
  const tensor = (data: number[]) => hostTensor("int64", [B, T], data);
  return {
    [`${prefix}input_ids`]: tensor(ids),
    [`${prefix}position_ids`]: tensor(pos),
    [`${prefix}attention_mask`]: tensor(mask),
    [`${prefix}labels`]: tensor(labels),
  };
}

/** Number of target tokens in a batch's labels. */
export function countTargets(labels: HostTensor): number {
  let n = 0;
  for (const v of labels.data as BigInt64Array) if (v !== BigInt(IGNORE)) n++;
  return n;
}

/** The target tokens of a sequence: the labels {@link batchFeeds} gives it that are not {@link IGNORE}. */
export function targetCount(seq: Sequence): number {
  return Math.max(0, seq.ids.length - Math.max(seq.targetFrom ?? 1, 1));
}

/**
 * A batch cut into micro-batches of at most `size` sequences, each with its share of the update: its target
 * tokens over the batch's (what gradient accumulation weighs each micro-batch's gradients by, so the update
 * equals one on the whole batch).
 */
export function microBatches(
  seqs: readonly Sequence[],
  size: number,
): { batches: Sequence[][]; weights: number[] } {
  const batches: Sequence[][] = [];
  for (let i = 0; i < seqs.length; i += size) batches.push(seqs.slice(i, i + size));
  const counts = batches.map((b) => b.reduce((n, q) => n + targetCount(q), 0));
  const total = counts.reduce((a, b) => a + b, 0);
  return { batches, weights: counts.map((c) => c / total) };
}

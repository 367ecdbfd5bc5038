/**
 * Seeded, deterministic, length-bucketed batching.
 *
 * Each epoch shuffles the sequences with its own {@link Rng}, sorts them by length within windows of
 * {@link WINDOW_BATCHES} batches, cuts each window into batches and shuffles the order of the batches. Batches
 * then hold sequences of similar length, so little of a right-padded batch is padding, while the window keeps
 * every epoch's order random. Only the last batch of an epoch may be partial, and it stays last.
 *
 * @example
 * ```ts
 * import { BatchPlan } from "./batches.ts";
 * const sequences = Array.from({ length: 10 }, (_, i) => ({ ids: new Array(i + 2).fill(1), targetFrom: 1 }));
 * const plan = new BatchPlan(sequences, { batchSize: 4, seed: 0 });
 * const sizes = plan.epoch(0).map((batch) => batch.length);
 * if (plan.batchesPerEpoch !== 3 || sizes.join() !== "4,4,2") throw new Error("two full batches, then the rest");
 * ```
 *
 * @module
 */

import type { Sequence } from "./sequence.ts";
import { Rng } from "../util/random.ts";

/** Batches per length-sorting window. */
export const WINDOW_BATCHES = 50;

/** Options of a {@link BatchPlan}. */
export interface BatchPlanOptions {
  /** Sequences per batch (the last batch of an epoch may hold fewer). */
  batchSize: number;
  /** Seed of the data order; each epoch's generator is seeded from it and the epoch number. */
  seed: number;
  /** Group sequences of similar length (default true); false: plain shuffled batches. */
  bucket?: boolean;
}

/** The seed of epoch `epoch`'s generator: a multiplicative mix, so seed s, epoch 1 is not seed s + 1, epoch 0. */
function epochSeed(seed: number, epoch: number): number {
  return (Math.imul(seed, 0x9e3779b1) + epoch) | 0;
}

/** Consecutive slices of `items` of `size` (the last may be shorter). */
function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** The batches of every epoch of a training run, computed from the sequences, the batch size and the seed. */
export class BatchPlan {
  readonly #sequences: readonly Sequence[];
  readonly #batchSize: number;
  readonly #seed: number;
  readonly #bucket: boolean;
  /** The batches of the epoch {@link batch} last read from. */
  #current: { epoch: number; batches: Sequence[][] } | null = null;
  /** Batches in every epoch: ceil(sequences / batchSize). */
  readonly batchesPerEpoch: number;

  constructor(sequences: readonly Sequence[], options: BatchPlanOptions) {
    const { batchSize, seed, bucket = true } = options;
    if (sequences.length === 0) throw new RangeError("a batch plan needs at least one sequence, got none");
    if (!(Number.isInteger(batchSize) && batchSize > 0)) {
      throw new RangeError(`'batchSize' must be a positive integer, got ${batchSize}`);
    }
    if (!Number.isInteger(seed)) throw new RangeError(`'seed' must be an integer, got ${seed}`);
    this.#sequences = sequences;
    this.#batchSize = batchSize;
    this.#seed = seed;
    this.#bucket = bucket;
    this.batchesPerEpoch = Math.ceil(sequences.length / batchSize);
  }

  /**
   * The batches of epoch `epoch` (0-based), each an array of sequences: every sequence exactly once. The same
   * seed and epoch always give the same batches.
   */
  epoch(epoch: number): Sequence[][] {
    if (!(Number.isInteger(epoch) && epoch >= 0)) {
      throw new RangeError(`'epoch' must be a non-negative integer, got ${epoch}`);
    }
    const rng = new Rng(epochSeed(this.#seed, epoch));
    const order = rng.shuffle([...this.#sequences]);
    const size = this.#batchSize;
    if (!this.#bucket) return chunks(order, size);
    const batches: Sequence[][] = [];
    const window = size * WINDOW_BATCHES; // a multiple of the batch size: only the last window leaves a rest
    for (let i = 0; i < order.length; i += window) {
      const sorted = order.slice(i, i + window).sort((a, b) => a.ids.length - b.ids.length); // stable
      batches.push(...chunks(sorted, size));
    }
    const partial = batches[batches.length - 1].length < size ? batches.pop() : undefined;
    rng.shuffle(batches);
    if (partial !== undefined) batches.push(partial);
    return batches;
  }

  /** The epoch (0-based) that update `step` (0-based, counted across epochs) falls in. */
  epochOf(step: number): number {
    return Math.floor(step / this.batchesPerEpoch);
  }

  /**
   * The batch of update `step` (0-based, counted across epochs): batch `step % batchesPerEpoch` of epoch
   * {@link epochOf}(step). The whole data position of a run is its step number.
   */
  batch(step: number): Sequence[] {
    if (!(Number.isInteger(step) && step >= 0)) {
      throw new RangeError(`'step' must be a non-negative integer, got ${step}`);
    }
    const epoch = this.epochOf(step);
    if (this.#current?.epoch !== epoch) this.#current = { epoch, batches: this.epoch(epoch) };
    return this.#current.batches[step % this.batchesPerEpoch];
  }

  /** Padding fraction of epoch `epoch`: padded tokens / all tokens of its right-padded batches, for reports. */
  paddingFraction(epoch: number): number {
    let padded = 0, all = 0;
    for (const batch of this.epoch(epoch)) {
      const longest = Math.max(...batch.map((s) => s.ids.length));
      all += longest * batch.length;
      for (const s of batch) padded += longest - s.ids.length;
    }
    return all === 0 ? 0 : padded / all;
  }
}

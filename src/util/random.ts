/**
 * A small seeded random number generator (SplitMix32 state, Mulberry32 output), deterministic across platforms.
 *
 * @example
 * ```ts
 * import { Rng } from "./random.ts";
 * const a = new Rng(7).uniform(-1, 1), b = new Rng(7).uniform(-1, 1);
 * if (a !== b) throw new Error("same seed must give the same numbers");
 * ```
 *
 * @module
 */

/** Seeded generator of uniform, normal and integer values. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new Error(`seed must be an integer, got ${seed}`);
    this.#state = seed >>> 0;
  }

  /** The generator's state, to save in a checkpoint. */
  get state(): number {
    return this.#state;
  }

  /** Restores a state saved from {@link Rng.state}. */
  static fromState(state: number): Rng {
    return new Rng(state);
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    const u = 1 - this.next(), v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** `n` uniform values in [lo, hi). */
  uniforms(n: number, lo = 0, hi = 1): number[] {
    return Array.from({ length: n }, () => this.uniform(lo, hi));
  }

  /** Shuffles `items` in place (Fisher–Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
}

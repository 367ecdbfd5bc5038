/**
 * Dynamic loss scaling for float16 training, as PyTorch's `GradScaler` does it.
 *
 * Why: the gradients flowing back through float16 activations are tiny (the LM loss is a mean over every target
 * token, so each logit's gradient is at most 1/N), and float16 has no normal numbers below 6.1e-5: they lose
 * bits as subnormals and flush to zero below 6e-8. So backward starts from S·loss instead of the loss (S a power
 * of two, applied in float32 before the first cast to float16), and the parameter gradients, float32 again past
 * the casts, are divided by S before clipping and the optimizer (exact: S is a power of two). Parameters,
 * optimizer state and the loss never see S.
 *
 * Dynamic: S starts at 2¹⁶. A step whose gradients are not all finite (S·gradient overflowed float16's ±65504)
 * keeps its batch but drops its update (parameters, optimizer moments and the optimizer's step count stay), and
 * S halves; after `growthInterval` finite steps in a row S doubles. The state ([S, finite steps since S last
 * changed, skipped steps]) is saved with the optimizer state, so a resumed run scales as the uninterrupted one.
 *
 * float32 and float64 graphs have no loss scale; bfloat16 would not need one (float32's exponent range).
 *
 * @module
 */

import { cast, div } from "../graph/build.ts";
import type { Graph, Value } from "../graph/graph.ts";
import { type HostTensor, hostTensor } from "../runtime/session.ts";

/** Name of the scalar loss-scale input of a float16 training graph. */
export const LOSS_SCALE_INPUT = "optimizer/loss_scale";

/** Name of the loss scaler's state among a trainer's state tensors: [scale, finite run, skipped steps]. */
export const LOSS_SCALER_STATE = "optimizer/loss_scaler";

/** Declares the loss-scale input (a scalar in the graph's wide type) when `g` computes in float16. */
export function lossScaleInput(g: Graph): Value | undefined {
  return g.float === "float16" ? g.input(LOSS_SCALE_INPUT, g.wide, []) : undefined;
}

/** Gradients of S·loss divided by S, each in its own type. */
export function unscale(grads: readonly Value[], scale: Value): Value[] {
  return grads.map((d) => div(d, cast(scale, d.dtype)));
}

/** Options of {@link DynamicLossScale}; defaults are PyTorch's. */
export interface LossScaleOptions {
  /** The first scale (default 2¹⁶). */
  initial?: number;
  /** Finite steps in a row after which the scale doubles (default 2000). */
  growthInterval?: number;
}

/**
 * The host side: the current scale, and what a step's outcome does to it.
 *
 * @example
 * ```ts
 * import { DynamicLossScale } from "./loss_scale.ts";
 * const s = new DynamicLossScale({ initial: 1024, growthInterval: 2 });
 * // An overflow drops its update and halves the scale; two finite steps in a row double it again.
 * const kept = [s.update(false), s.update(true), s.update(true)];
 * if (kept.join() !== "false,true,true" || s.scale !== 1024 || s.skipped !== 1) throw new Error(`${kept}`);
 * ```
 */
export class DynamicLossScale {
  #scale: number;
  #run: number;
  #skipped: number;
  readonly #growthInterval: number;

  /**
   * Starts from `options`, or from `state` (see {@link state}) when resuming a trainer that has taken `steps`
   * steps (the skipped ones among them).
   */
  constructor(options: LossScaleOptions = {}, state?: HostTensor, steps = 0) {
    const initial = options.initial ?? 2 ** 16;
    this.#growthInterval = options.growthInterval ?? 2000;
    if (!(initial > 0) || !Number.isFinite(initial)) {
      throw new Error(`the initial loss scale must be a positive number, got ${initial}`);
    }
    if (!Number.isInteger(this.#growthInterval) || this.#growthInterval < 1) {
      throw new Error(`'growthInterval' must be a positive integer, got ${this.#growthInterval}`);
    }
    const [scale, run, skipped] = state ? Array.from(state.data as Float32Array) : [initial, 0, 0];
    if (!(scale > 0) || !(run >= 0) || !(skipped >= 0)) {
      throw new Error(
        `'${LOSS_SCALER_STATE}' must hold [scale > 0, run >= 0, skipped >= 0], got ${state?.data}`,
      );
    }
    if (skipped > steps) {
      throw new Error(
        `'${LOSS_SCALER_STATE}' says the run skipped ${skipped} of its steps, more than the ${steps} taken`,
      );
    }
    [this.#scale, this.#run, this.#skipped] = [scale, run, skipped];
  }

  /** The scale S the next step's loss is multiplied by. */
  get scale(): number {
    return this.#scale;
  }

  /** Steps whose update was dropped so far. */
  get skipped(): number {
    return this.#skipped;
  }

  /** Records a step's outcome; true when its update is to be kept (its gradients were all finite). */
  update(finite: boolean): boolean {
    if (!finite) {
      this.#scale = Math.max(this.#scale / 2, 2 ** -24);
      this.#run = 0;
      this.#skipped++;
      return false;
    }
    if (++this.#run >= this.#growthInterval) {
      this.#scale = Math.min(this.#scale * 2, 2 ** 24);
      this.#run = 0;
    }
    return true;
  }

  /** [scale, finite steps since the scale last changed, skipped steps], for checkpoints. */
  state(): HostTensor {
    return hostTensor("float32", [3], [this.#scale, this.#run, this.#skipped]);
  }
}

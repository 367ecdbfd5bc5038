/**
 * Gradient accumulation: an update over several micro-batches. A gradient graph gives each micro-batch's loss
 * and parameter gradients; the host combines them weighted by each micro-batch's number of target tokens, so the
 * update equals one on the whole batch (its loss being the mean over all target tokens); an apply graph then runs
 * the optimizer. Parameters and optimizer slots stay on the host between steps, as in {@link TrainLoop}. A float16
 * gradient graph takes the loss scale as an input and returns unscaled gradients; an update whose accumulated
 * gradients are not all finite is dropped and the scale halves (see {@link ./loss_scale.ts}).
 *
 * @module
 */

import { Graph, type Value } from "../graph/graph.ts";
import type { Outputs } from "../graph/serialize.ts";
import { type HostTensor, hostTensor, type Session } from "../runtime/session.ts";
import { LOSS_SCALE_INPUT, type LossScaleOptions } from "./loss_scale.ts";
import { applyOptimizer, type Optimizer } from "./optim.ts";
import { TrainerState } from "./state.ts";
import { lossGradients, lrInput, slotName, STEP_INPUT, type StepResult } from "./step.ts";

/**
 * Output names of a gradient graph: `loss` and `grad/<param>`. With `lossScale` (the input of
 * {@link lossScaleInput}), backward starts from the scaled loss (`backwardFrom.seed` must already be scaled)
 * and the gradients are returned unscaled ({@link lossGradients}, as a fused train step forms them).
 */
export function gradOutputs(
  loss: Value,
  params: readonly Value[],
  backwardFrom?: { readonly value: Value; readonly seed: Value },
  lossScale?: Value,
): Outputs {
  const grads = lossGradients(loss, params, { backwardFrom, lossScale });
  return Object.fromEntries([["loss", loss], ...params.map((p, i) => [`grad/${p.name}`, grads[i]])]);
}

/** The optimizer as its own graph: parameters, gradients and slots in, updated parameters and slots out. */
export function buildApplyGraph(
  params: readonly { readonly name: string; readonly shape: readonly number[] }[],
  optimizer: Optimizer,
  float: "float32" | "float64" = "float32",
  group = "train",
): { graph: Graph; outputs: Outputs } {
  const g = new Graph({ name: "apply", float });
  const states = params.map((p) => ({
    param: g.input(p.name, float, p.shape),
    grad: g.input(`grad/${p.name}`, float, p.shape),
    slots: optimizer.slots.map((s) => g.input(slotName(p.name, s), float, p.shape)),
  }));
  const lr = g.input(lrInput(group), float, []), step = g.input(STEP_INPUT, float, []);
  const { updates, gradNorm, paramMax } = applyOptimizer(optimizer, states, { lr, step });
  const outputs: Record<string, Value> = { grad_norm: gradNorm, param_max: paramMax };
  states.forEach((s, i) => {
    outputs[`next/${s.param.name}`] = updates[i].param;
    s.slots.forEach((slot, j) => (outputs[`next/${slot.name}`] = updates[i].slots[j]));
  });
  return { graph: g, outputs };
}

/** Host side of accumulated training; `step` takes the micro-batches of one update. */
export class AccumulatingLoop {
  readonly #grad: Session;
  readonly #apply: Session;
  readonly #params: readonly string[];
  readonly #group: string;
  readonly #state: TrainerState;

  /**
   * `params` names the trained parameters; `slots` the optimizer's slot names; `initial` gives every parameter
   * (slots and the loss scaler's state start fresh unless given), `steps` the updates already taken;
   * `lossScale` configures the scaler when the gradient graph has a loss-scale input.
   */
  constructor(
    sessions: { grad: Session; apply: Session },
    params: readonly string[],
    slots: readonly string[],
    initial: Readonly<Record<string, HostTensor>>,
    { steps = 0, group = "train", lossScale = {} }: {
      steps?: number;
      group?: string;
      lossScale?: LossScaleOptions;
    } = {},
  ) {
    this.#grad = sessions.grad;
    this.#apply = sessions.apply;
    this.#params = params;
    this.#group = group;
    const owners = params.flatMap((p) => slots.map((slot) => [slotName(p, slot), p]));
    const scaled = sessions.grad.inputNames.includes(LOSS_SCALE_INPUT);
    this.#state = new TrainerState(
      params,
      Object.fromEntries(owners),
      initial,
      steps,
      scaled ? lossScale : undefined,
    );
  }

  /** Steps taken so far, each a batch (an update dropped under float16 loss scaling counts too). */
  get steps(): number {
    return this.#state.steps;
  }

  /**
   * One update from `micro` batches; `weights[i]` is micro-batch i's share of the update (its target tokens over
   * all target tokens). The loss reported is the weighted mean, as one whole-batch step would report it.
   */
  async step(
    micro: readonly Record<string, HostTensor>[],
    weights: readonly number[],
    lr: number,
  ): Promise<StepResult> {
    // The accumulating loop's state is in host memory: it sums the micro-batches' gradients there.
    const state = this.#state.tensors as Record<string, HostTensor>;
    const params: Record<string, HostTensor> = Object.fromEntries(this.#params.map((p) => [p, state[p]]));
    const dtype = state[this.#params[0]].dtype;
    const scale = this.#state.lossScale;
    if (scale !== undefined) params[LOSS_SCALE_INPUT] = hostTensor(dtype, [], [scale]);
    const sums: Record<string, Float64Array> = {};
    let loss = 0;
    for (const [i, batch] of micro.entries()) {
      const out = await this.#grad.run({ ...batch, ...params });
      loss += weights[i] * Number(out.loss.data[0]);
      for (const p of this.#params) {
        const d = out[`grad/${p}`].data as Float32Array;
        const acc = sums[p] ??= new Float64Array(d.length);
        for (let k = 0; k < d.length; k++) acc[k] += weights[i] * d[k];
      }
    }
    const losses = { [this.#group]: loss };
    // Only a loss-scaled step checks: its update is dropped when an accumulated gradient is not finite.
    const finite = scale === undefined || Object.values(sums).every((acc) => acc.every(Number.isFinite));
    if (!finite) {
      this.#state.finishStep(false);
      return { loss, gradNorm: NaN, losses, gradNorms: { [this.#group]: NaN }, outputs: {}, skipped: true };
    }
    const feeds: Record<string, HostTensor> = {
      ...state,
      [lrInput(this.#group)]: hostTensor(dtype, [], [lr]),
      [STEP_INPUT]: hostTensor(dtype, [], [this.#state.optimizerStep]),
    };
    for (const p of this.#params) {
      const sum = dtype === "float32" ? Float32Array.from(sums[p]) : sums[p];
      feeds[`grad/${p}`] = hostTensor(dtype, state[p].dims, sum);
    }
    const out = await this.#apply.run(feeds);
    this.#state.update(
      Object.fromEntries(Object.keys(state).map((name) => [name, out[`next/${name}`]])),
      true,
    );
    this.#state.finishStep(true);
    const gradNorm = Number(out.grad_norm.data[0]);
    const paramMaxes = { [this.#group]: Number(out.param_max.data[0]) };
    return {
      loss,
      gradNorm,
      losses,
      gradNorms: { [this.#group]: gradNorm },
      paramMaxes,
      outputs: {},
      skipped: false,
    };
  }

  /** Current parameter values by name. */
  params(): Promise<Record<string, HostTensor>> {
    return this.#state.params();
  }

  /** Parameters, optimizer slots and the loss scaler's state (what a checkpoint saves). */
  state(): Promise<Record<string, HostTensor>> {
    return this.#state.checkpoint();
  }

  /** {@link AccumulatingLoop.state} before the last update (what a diverged run keeps). */
  previousState(): Promise<Record<string, HostTensor>> {
    return this.#state.previous();
  }
}

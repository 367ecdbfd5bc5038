/**
 * A training step as one graph: losses, gradients and optimizer updates, with every updated tensor an output
 * that feeds the matching input on the next step.
 *
 * A step may hold several update groups applied in order, each with its own loss, parameters, optimizer and
 * learning-rate input; a later group's loss may use an earlier group's updated parameters (the Flexora search
 * updates LoRA weights on a training batch, then gates on a validation batch at the new weights).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph/graph.ts";
 * import { matmul, mul, reduceMean, sub } from "../graph/build.ts";
 * import { serialize } from "../graph/serialize.ts";
 * import { createSession, hostTensor } from "../runtime/session.ts";
 * import { sgd } from "./optim.ts";
 * import { buildTrainStep, TrainLoop } from "./step.ts";
 *
 * const g = new Graph();
 * const x = g.input("x", "float32", ["N", 1]);
 * const y = g.input("y", "float32", ["N", 1]);
 * const w = g.input("w", "float32", [1, 1]);
 * const err = sub(matmul(x, w), y);
 * const step = buildTrainStep(reduceMean(mul(err, err), [0, 1]), [w], sgd());
 * const loop = new TrainLoop(await createSession(serialize(g, step.outputs)), step, {
 *   w: hostTensor("float32", [1, 1], [0]),
 * });
 * const batch = { x: hostTensor("float32", [2, 1], [1, 2]), y: hostTensor("float32", [2, 1], [3, 6]) };
 * for (let i = 0; i < 50; i++) await loop.step(batch, 0.1);
 * const w1 = (await loop.params()).w.data[0] as number;
 * if (Math.abs(w1 - 3) > 1e-3) throw new Error(`expected w ≈ 3, got ${w1}`);
 * ```
 *
 * @module
 */

import { gradients } from "../graph/autodiff.ts";
import { cast } from "../graph/build.ts";
import type { Graph, Value } from "../graph/graph.ts";
import type { Outputs } from "../graph/serialize.ts";
import {
  DeviceTensor,
  download,
  type HostTensor,
  hostTensor,
  type Session,
  type Tensor,
} from "../runtime/session.ts";
import { lossScaleInput, type LossScaleOptions, unscale } from "./loss_scale.ts";
import { applyOptimizer, type Optimizer } from "./optim.ts";
import { TrainerState } from "./state.ts";

/** Name of the 1-based step-number input every train step has. */
export const STEP_INPUT = "optimizer/step";

/** Name of a group's learning-rate input. */
export function lrInput(group: string): string {
  return `${group}/lr`;
}

/** Name of the input holding slot `slot` of parameter `param`. */
export function slotName(param: string, slot: string): string {
  return `${param}/${slot}`;
}

/** Where backward starts and what it differentiates: see {@link lossGradients}. */
export interface BackwardOptions {
  /** Values treated as constants when differentiating (a stop-gradient). */
  readonly constants?: readonly Value[];
  /**
   * Start backward at `value` with upstream gradient `seed` instead of at the loss: for losses whose own backward
   * is built by hand (the chunked LM head). With a loss scale, `seed` is that of the scaled loss.
   */
  readonly backwardFrom?: { readonly value: Value; readonly seed: Value };
  /** Gradients built by the caller (of the scaled loss, with a loss scale); backward is then not built. */
  readonly gradients?: readonly Value[];
  /** The float16 loss-scale input ({@link lossScaleInput}): backward starts from loss × scale. */
  readonly lossScale?: Value;
}

/**
 * The gradients of `loss` with respect to `params`, the one place a training graph's backward is built: from the
 * loss (or `backwardFrom`), scaled by the loss scale when there is one and divided by it again afterwards, so the
 * gradients returned are those of the loss itself. Nodes are named under `<group>.backward` and `<group>.unscale`
 * (`backward` and `unscale` without a group).
 */
export function lossGradients(
  loss: Value,
  params: readonly Value[],
  options: BackwardOptions = {},
  group?: string,
): Value[] {
  const g = loss.graph, scale = options.lossScale;
  const scope = (what: string) => (group ? `${group}.${what}` : what);
  const start = options.backwardFrom ?? { value: loss, seed: scale && cast(scale, loss.dtype) };
  const scaled = options.gradients ?? g.scope(
    scope("backward"),
    () => gradients(start.value, params, { constants: options.constants, seed: start.seed }),
  );
  const grads = scale ? g.scope(scope("unscale"), () => unscale(scaled, scale)) : [...scaled];
  if (grads.length !== params.length) {
    throw new Error(`${grads.length} gradients for ${params.length} parameters`);
  }
  return grads;
}

/** One update group of a built step. */
export interface StepGroup {
  readonly name: string;
  /** Output names of the group's loss, pre-clip gradient norm and largest updated parameter magnitude. */
  readonly loss: string;
  readonly gradNorm: string;
  readonly paramMax: string;
}

/** The outputs of a train step graph and how they feed back. */
export interface TrainStepGraph {
  /** Graph outputs: each group's loss and gradient norm, updated parameters and slots, and any extras. */
  readonly outputs: Outputs;
  readonly groups: readonly StepGroup[];
  /** Input names of the trained parameters. */
  readonly params: readonly string[];
  /** For each optimizer-slot input, the parameter it belongs to. */
  readonly slotOwner: Readonly<Record<string, string>>;
  /** For each state input (parameter or slot), the output that holds its next value. */
  readonly next: Readonly<Record<string, string>>;
  /** Name of the loss-scale input, in a float16 graph (see {@link ./loss_scale.ts}). */
  readonly lossScale?: string;
}

/** Options of {@link TrainStepBuilder.update}: how the group's gradients are formed (the loss scale is the step's). */
export type UpdateOptions = Omit<BackwardOptions, "lossScale">;

/**
 * Builds a step of one or more update groups. Step number and learning rates are scalars of the graph's wide
 * type; a float16 graph also gets a loss-scale input: every backward starts from the loss times it, and the
 * gradients are divided by it before the optimizer.
 */
export class TrainStepBuilder {
  /** The loss-scale input of a float16 graph (see {@link ./loss_scale.ts}); undefined otherwise. */
  readonly lossScale?: Value;
  readonly #g: Graph;
  readonly #step: Value;
  readonly #outputs: Record<string, Value> = {};
  readonly #groups: StepGroup[] = [];
  readonly #params: string[] = [];
  readonly #slotOwner: Record<string, string> = {};
  readonly #next: Record<string, string> = {};

  constructor(g: Graph) {
    this.#g = g;
    this.#step = g.input(STEP_INPUT, g.wide, []);
    this.lossScale = lossScaleInput(g);
  }

  /**
   * Differentiates `loss` with respect to `params` (graph inputs), applies `optimizer` with the learning rate
   * input `<name>/lr`, and returns the updated parameters in `params` order.
   */
  update(
    name: string,
    loss: Value,
    params: readonly Value[],
    optimizer: Optimizer,
    options: UpdateOptions = {},
  ): Value[] {
    const g = this.#g;
    for (const p of params) {
      if (!g.inputs.includes(p)) throw new Error(`parameter '${p.name}' must be a graph input to be trained`);
    }
    const lr = g.input(lrInput(name), g.wide, []);
    let grads: Value[];
    try {
      grads = lossGradients(loss, params, { ...options, lossScale: this.lossScale }, name);
    } catch (e) {
      throw new Error(`group '${name}': ${(e as Error).message}`);
    }
    const states = params.map((param, i) => ({
      param,
      grad: grads[i],
      slots: optimizer.slots.map((s) => g.input(slotName(param.name, s), param.dtype, param.shape)),
    }));
    const { updates, gradNorm, paramMax } = g.scope(
      `${name}.optimizer`,
      () => applyOptimizer(optimizer, states, { lr, step: this.#step }),
    );
    const group = {
      name,
      loss: `${name}/loss`,
      gradNorm: `${name}/grad_norm`,
      paramMax: `${name}/param_max`,
    };
    this.#outputs[group.loss] = loss;
    this.#outputs[group.gradNorm] = gradNorm;
    this.#outputs[group.paramMax] = paramMax;
    this.#groups.push(group);
    states.forEach((s, i) => {
      this.#params.push(s.param.name);
      this.#feed(s.param, updates[i].param);
      s.slots.forEach((slot, j) => {
        this.#feed(slot, updates[i].slots[j]);
        this.#slotOwner[slot.name] = s.param.name;
      });
    });
    return updates.map((u) => u.param);
  }

  #feed(input: Value, value: Value): void {
    this.#outputs[`next/${input.name}`] = value;
    this.#next[input.name] = `next/${input.name}`;
  }

  /** The finished step, with `extra` outputs added. */
  finish(extra: Outputs = {}): TrainStepGraph {
    return {
      outputs: { ...this.#outputs, ...extra },
      groups: [...this.#groups],
      params: [...this.#params],
      slotOwner: { ...this.#slotOwner },
      next: { ...this.#next },
      lossScale: this.lossScale?.name,
    };
  }
}

/** The outputs to leave in device memory for a step graph: the next values of its parameters and slots. */
export function stateOutputs(graph: TrainStepGraph): string[] {
  return Object.values(graph.next);
}

/** A step with one update group named "train". */
export function buildTrainStep(
  loss: Value,
  params: readonly Value[],
  optimizer: Optimizer,
  extra: Outputs = {},
): TrainStepGraph {
  const builder = new TrainStepBuilder(loss.graph);
  builder.update("train", loss, params, optimizer);
  return builder.finish(extra);
}

/** Losses and pre-clip gradient norms of one step, by group. */
export interface StepResult {
  /** The first group's loss and gradient norm. */
  readonly loss: number;
  readonly gradNorm: number;
  readonly losses: Readonly<Record<string, number>>;
  readonly gradNorms: Readonly<Record<string, number>>;
  /**
   * Each group's largest updated parameter magnitude (NaN or infinite when a parameter is), computed in the
   * graph; absent for a dropped update.
   */
  readonly paramMaxes?: Readonly<Record<string, number>>;
  /** Every output that is not state, such as extras. */
  readonly outputs: Readonly<Record<string, HostTensor>>;
  /**
   * True when the update was dropped because a gradient was not finite under float16 loss scaling (the batch
   * still counts as a step); see {@link ./loss_scale.ts}.
   */
  readonly skipped?: boolean;
}

/** The value of a one-element output that must be in host memory. */
function scalarOf(t: Tensor | undefined, name: string): number {
  if (!t || t instanceof DeviceTensor) throw new Error(`output '${name}' must come back to the host`);
  return Number(t.data[0]);
}

/**
 * Host side of training: keeps parameters and slots, and runs steps that feed them back. For a float16 step it
 * also keeps the dynamic loss scale, and drops the update of a step whose gradients were not finite.
 *
 * State stays where the session leaves it: with the `next/…` outputs as the session's `deviceOutputs`
 * ({@link stateOutputs}) on WebGPU, parameters and slots live in device memory between steps and a step moves
 * only the batch, the scalars and the losses; {@link TrainLoop.params} and {@link TrainLoop.state} download.
 */
export class TrainLoop {
  readonly #session: Session;
  readonly #graph: TrainStepGraph;
  readonly #state: TrainerState;

  /**
   * `initial` gives every parameter; slots (and the loss scaler's state) start fresh unless given too (a resumed
   * run). `lossScale` configures the scaler of a float16 step.
   */
  constructor(
    session: Session,
    graph: TrainStepGraph,
    initial: Readonly<Record<string, HostTensor>>,
    steps = 0,
    lossScale: LossScaleOptions = {},
  ) {
    this.#session = session;
    this.#graph = graph;
    this.#state = new TrainerState(
      graph.params,
      graph.slotOwner,
      initial,
      steps,
      graph.lossScale ? lossScale : undefined,
    );
  }

  /** Steps taken so far, each a batch (an update dropped under float16 loss scaling counts too). */
  get steps(): number {
    return this.#state.steps;
  }

  /**
   * Runs one step on `batch`. `lr` is the learning rate of a single group, or one per group name.
   */
  async step(
    batch: Readonly<Record<string, HostTensor>>,
    lr: number | Readonly<Record<string, number>>,
  ): Promise<StepResult> {
    const state = this.#state.tensors;
    const dtype = Object.values(state)[0]?.dtype ?? "float32";
    const scalar = (v: number) => hostTensor(dtype, [], [v]);
    const feeds: Record<string, Tensor> = {
      ...batch,
      ...state,
      [STEP_INPUT]: scalar(this.#state.optimizerStep),
    };
    const scale = this.#state.lossScale;
    if (scale !== undefined) feeds[this.#graph.lossScale!] = scalar(scale);
    for (const group of this.#graph.groups) {
      const rate = typeof lr === "number" ? lr : lr[group.name];
      if (rate === undefined) throw new Error(`no learning rate for update group '${group.name}'`);
      feeds[lrInput(group.name)] = scalar(rate);
    }
    const out = await this.#session.runOnDevice(feeds);
    const losses: Record<string, number> = {}, gradNorms: Record<string, number> = {};
    const paramMaxes: Record<string, number> = {};
    for (const group of this.#graph.groups) {
      losses[group.name] = scalarOf(out[group.loss], group.loss);
      gradNorms[group.name] = scalarOf(out[group.gradNorm], group.gradNorm);
      paramMaxes[group.name] = scalarOf(out[group.paramMax], group.paramMax);
    }
    const keep = this.#state.finishStep(Object.values(gradNorms).every(Number.isFinite));
    const next = Object.entries(this.#graph.next).map(([input, output]) => [input, out[output]]);
    this.#state.update(Object.fromEntries(next), keep);
    const first = this.#graph.groups[0].name;
    const stateOutputs = new Set(Object.values(this.#graph.next));
    const outputs: Record<string, HostTensor> = {};
    for (const [k, t] of Object.entries(out)) if (!stateOutputs.has(k)) outputs[k] = await download(t);
    return {
      loss: losses[first],
      gradNorm: gradNorms[first],
      losses,
      gradNorms,
      ...(keep ? { paramMaxes } : {}),
      outputs,
      skipped: !keep,
    };
  }

  /** Current parameter values by input name, in host memory. */
  params(): Promise<Record<string, HostTensor>> {
    return this.#state.params();
  }

  /** Parameters, optimizer slots and the loss scaler's state, by name (what a checkpoint saves), in host memory. */
  state(): Promise<Record<string, HostTensor>> {
    return this.#state.checkpoint();
  }

  /** {@link TrainLoop.state} before the last step (what a diverged run keeps). */
  previousState(): Promise<Record<string, HostTensor>> {
    return this.#state.previous();
  }

  /** The current loss scale of a float16 step; undefined for other steps. */
  get lossScale(): number | undefined {
    return this.#state.lossScale;
  }
}

/**
 * A training step as one graph: loss, gradients, and the optimizer update, with every updated tensor an output
 * that feeds the matching input on the next step.
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
 * const w1 = loop.params().w.data[0] as number;
 * if (Math.abs(w1 - 3) > 1e-3) throw new Error(`expected w ≈ 3, got ${w1}`);
 * ```
 *
 * @module
 */

import { gradients } from "../graph/autodiff.ts";
import type { Value } from "../graph/graph.ts";
import type { Outputs } from "../graph/serialize.ts";
import { type HostTensor, hostTensor, type Session } from "../runtime/session.ts";
import { applyOptimizer, type Optimizer } from "./optim.ts";

/** Names of the scalar inputs every train step has. */
export const LR_INPUT = "optimizer/lr";
export const STEP_INPUT = "optimizer/step";

/** The outputs of a train step graph and how they feed back. */
export interface TrainStepGraph {
  /** Graph outputs: `loss`, `grad_norm`, updated parameters and slots, and any extras. */
  readonly outputs: Outputs;
  /** Input names of the trained parameters. */
  readonly params: readonly string[];
  /** For each optimizer-slot input, the parameter it belongs to. */
  readonly slotOwner: Readonly<Record<string, string>>;
  /** For each state input (parameter or slot), the output that holds its next value. */
  readonly next: Readonly<Record<string, string>>;
}

/** Name of the input holding slot `slot` of parameter `param`. */
export function slotName(param: string, slot: string): string {
  return `${param}/${slot}`;
}

/**
 * Differentiates `loss` with respect to `params` (graph inputs), applies `optimizer`, and names the outputs.
 * Declares the inputs {@link LR_INPUT}, {@link STEP_INPUT} and one per optimizer slot.
 */
export function buildTrainStep(
  loss: Value,
  params: readonly Value[],
  optimizer: Optimizer,
  extra: Outputs = {},
): TrainStepGraph {
  const g = loss.graph;
  for (const p of params) {
    if (!g.inputs.includes(p)) throw new Error(`parameter '${p.name}' must be a graph input to be trained`);
  }
  const lr = g.input(LR_INPUT, g.float, []);
  const step = g.input(STEP_INPUT, g.float, []);
  const grads = g.scope("backward", () => gradients(loss, params));
  const states = params.map((param, i) => ({
    param,
    grad: grads[i],
    slots: optimizer.slots.map((s) => g.input(slotName(param.name, s), param.dtype, param.shape)),
  }));
  const { updates, gradNorm } = g.scope("optimizer", () => applyOptimizer(optimizer, states, { lr, step }));
  const outputs: Record<string, Value> = { loss, grad_norm: gradNorm, ...extra };
  const next: Record<string, string> = {};
  const slotOwner: Record<string, string> = {};
  const feed = (input: Value, value: Value) => {
    outputs[`next/${input.name}`] = value;
    next[input.name] = `next/${input.name}`;
  };
  states.forEach((s, i) => {
    feed(s.param, updates[i].param);
    s.slots.forEach((slot, j) => {
      feed(slot, updates[i].slots[j]);
      slotOwner[slot.name] = s.param.name;
    });
  });
  return { outputs, params: params.map((p) => p.name), slotOwner, next };
}

/** Host side of training: keeps parameters and slots, and runs steps that feed them back. */
export class TrainLoop {
  readonly #session: Session;
  readonly #graph: TrainStepGraph;
  #state: Record<string, HostTensor> = {};
  #step = 0;

  /** `initial` gives every parameter; slots start at zero. */
  constructor(session: Session, graph: TrainStepGraph, initial: Readonly<Record<string, HostTensor>>) {
    this.#session = session;
    this.#graph = graph;
    for (const name of graph.params) {
      if (!initial[name]) throw new Error(`no initial value for parameter '${name}'`);
      this.#state[name] = initial[name];
    }
    for (const [slot, owner] of Object.entries(graph.slotOwner)) {
      this.#state[slot] = hostTensor(initial[owner].dtype, initial[owner].dims);
    }
  }

  /** Updates taken so far. */
  get steps(): number {
    return this.#step;
  }

  /** Runs one step on `batch` with learning rate `lr`; returns the loss and the gradient norm before clipping. */
  async step(
    batch: Readonly<Record<string, HostTensor>>,
    lr: number,
  ): Promise<{ loss: number; gradNorm: number }> {
    const dtype = Object.values(this.#state)[0]?.dtype ?? "float32";
    const scalar = (v: number) => hostTensor(dtype, [], [v]);
    const out = await this.#session.run({
      ...batch,
      ...this.#state,
      [LR_INPUT]: scalar(lr),
      [STEP_INPUT]: scalar(this.#step + 1),
    });
    for (const [input, output] of Object.entries(this.#graph.next)) this.#state[input] = out[output];
    this.#step++;
    return { loss: Number(out.loss.data[0]), gradNorm: Number(out.grad_norm.data[0]) };
  }

  /** Current parameter values by input name. */
  params(): Record<string, HostTensor> {
    return Object.fromEntries(this.#graph.params.map((p) => [p, this.#state[p]]));
  }
}

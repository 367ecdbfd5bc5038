/**
 * Optimizers as graph fragments: a train step's outputs are only the loss, the updated parameters and their
 * optimizer slots, so nothing else crosses back to JavaScript.
 *
 * The learning rate and the 1-based step number are scalar graph inputs (schedules are pure functions of the step,
 * evaluated on the host: see {@link ./schedule.ts}).
 *
 * @module
 */

import {
  add,
  concat,
  div,
  exp,
  less,
  maximum,
  minimum,
  mul,
  neg,
  reduceMax,
  reduceMean,
  reduceSum,
  reshape,
  split,
  sqrt,
  sub,
  sum,
  where,
} from "../graph/build.ts";
import type { Value } from "../graph/graph.ts";

/** A parameter, its gradient and its optimizer slots (in the optimizer's `slots` order). */
export interface ParamState {
  readonly param: Value;
  readonly grad: Value;
  readonly slots: readonly Value[];
}

/** A parameter's updated value and slots. */
export interface ParamUpdate {
  readonly param: Value;
  readonly slots: readonly Value[];
}

/** Scalar inputs of an update: learning rate and 1-based step number (floats). */
export interface StepInputs {
  readonly lr: Value;
  readonly step: Value;
}

/** An optimizer: named slots per parameter and the update that advances them. */
export interface Optimizer {
  readonly name: string;
  /** Names of the per-parameter state tensors, each shaped like the parameter. */
  readonly slots: readonly string[];
  /** Largest global gradient norm before clipping scales gradients down (undefined: no clipping). */
  readonly maxGradNorm?: number;
  /**
   * True when `update` treats every element on its own (given the step inputs): then updating one concatenation
   * of many tensors gives each element what updating its own tensor would, and {@link applyOptimizer} updates a
   * group's tensors as one.
   */
  readonly elementwise?: boolean;
  update(states: readonly ParamState[], inputs: StepInputs): ParamUpdate[];
}

/** Options of {@link adamw}; defaults follow PyTorch's `AdamW`. */
export interface AdamWOptions {
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (default 0.01). */
  weightDecay?: number;
  /** Global-norm gradient clipping (default none). */
  maxGradNorm?: number;
  /**
   * One second moment per tensor (default false): v tracks the mean of g² over the tensor's elements instead of
   * each element's g², so the elements of a tensor move in proportion to their gradients rather than each at
   * about lr per step whatever its gradient's size.
   */
  sharedSecondMoment?: boolean;
}

/** Options of {@link sgd}. */
export interface SgdOptions {
  /** Default 0 (plain SGD, no slots). */
  momentum?: number;
  /** L2 penalty added to the gradient, as PyTorch's `SGD` (default 0). */
  weightDecay?: number;
  /** Global-norm gradient clipping (default none). */
  maxGradNorm?: number;
}

function checkRange(name: string, value: number, lo: number, hi: number): number {
  if (!(value >= lo && value < hi)) throw new Error(`'${name}' must be in [${lo}, ${hi}), got ${value}`);
  return value;
}

/**
 * AdamW (Loshchilov & Hutter) with bias correction and decoupled weight decay:
 * m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p − lr·(m̂ / (√v̂ + ε) + λ·p), m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ).
 * With `sharedSecondMoment`, g² is replaced by its mean over the tensor (v stays shaped like the parameter, every
 * element equal).
 */
export function adamw(options: AdamWOptions = {}): Optimizer {
  const b1 = checkRange("beta1", options.beta1 ?? 0.9, 0, 1);
  const b2 = checkRange("beta2", options.beta2 ?? 0.999, 0, 1);
  const eps = checkRange("eps", options.eps ?? 1e-8, 0, Infinity);
  const wd = checkRange("weightDecay", options.weightDecay ?? 0.01, 0, Infinity);
  const square = (g: Value) => {
    const g2 = mul(g, g);
    return options.sharedSecondMoment ? reduceMean(g2, g.shape.map((_, i) => i), true) : g2;
  };
  return {
    name: "adamw",
    slots: ["m", "v"],
    maxGradNorm: options.maxGradNorm,
    elementwise: !options.sharedSecondMoment, // a shared second moment is a mean over its own tensor
    update(states, { lr, step }) {
      const c1 = oneMinusPower(b1, step); // 1 − β1ᵗ
      const c2 = oneMinusPower(b2, step);
      return states.map(({ param: p, grad: g, slots: [m, v] }) => {
        const m1 = add(mul(m, b1), mul(g, 1 - b1));
        const v1 = add(mul(v, b2), mul(square(g), 1 - b2));
        const direction = div(div(m1, c1), add(sqrt(div(v1, c2)), eps));
        const decayed = wd ? add(direction, mul(p, wd)) : direction;
        return { param: sub(p, mul(decayed, lr)), slots: [m1, v1] };
      });
    },
  };
}

/**
 * 1 − βᵗ for a scalar step t (Adam's bias correction), within a few ulp on every provider.
 *
 * Written as `sub(1, pow(β, t))` it is a difference of nearly equal numbers while βᵗ is near 1 (β2 = 0.999 early
 * in training): 1 − 0.999 is 1e-3, so an error of 1e-7 in βᵗ is 1e-4 here, and in every parameter's update.
 * Both parts of that error are real: β rounded to float32 (0.999 becomes 0.99900001, so 1 − β is 1.3e-5 off on
 * the CPU), and WebGPU's `Pow` (WGSL's `pow`, exp2(t·log2 β)), which on lavapipe put 1 − pow(0.999, 1) 1.06e-4
 * off, the first LoRA update 5.4e-5, and the Flexora gate gradient taken after it 1.1e-4 (docs/devices.md).
 *
 * So it is −expm1(a), a = t·ln β with ln β taken in float64 here: for a ≥ −1 as the Taylor series of
 * expm1(a)/a to a¹¹ (Horner; the first term left out is under 2e-10 relative), else as 1 − exp(a), which no
 * longer cancels (1 − e⁻¹ ≈ 0.63).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph/graph.ts";
 * import { serialize } from "../graph/serialize.ts";
 * import { createSession, hostTensor } from "../runtime/session.ts";
 * import { oneMinusPower } from "./optim.ts";
 *
 * const g = new Graph({ float: "float32" });
 * const c = oneMinusPower(0.999, g.input("t", "float32", []));
 * const session = await createSession(serialize(g, { c }));
 * const out = (await session.run({ t: hostTensor("float32", [], [1]) })).c.data[0] as number;
 * if (Math.abs(out - 1e-3) > 1e-9) throw new Error(`1 − 0.999¹ is 1e-3, got ${out}`);
 * ```
 */
export function oneMinusPower(beta: number, step: Value): Value {
  const a = mul(step, Math.log(beta)); // t·ln β ≤ 0
  let series: Value | number = 1; // expm1(a)/a = 1 + a/2·(1 + a/3·(1 + …))
  for (let k = 12; k >= 2; k--) series = add(mul(div(a, k), series), 1);
  return where(less(a, -1), sub(1, exp(a)), neg(mul(a, series)));
}

/** SGD with optional momentum (PyTorch convention: buf ← μ·buf + g; p ← p − lr·buf) and L2 weight decay. */
export function sgd(options: SgdOptions = {}): Optimizer {
  const mu = checkRange("momentum", options.momentum ?? 0, 0, 1);
  const wd = checkRange("weightDecay", options.weightDecay ?? 0, 0, Infinity);
  return {
    name: "sgd",
    slots: mu ? ["momentum"] : [],
    maxGradNorm: options.maxGradNorm,
    elementwise: true,
    update(states, { lr }) {
      return states.map(({ param: p, grad, slots }) => {
        const g = wd ? add(grad, mul(p, wd)) : grad;
        if (!mu) return { param: sub(p, mul(g, lr)), slots: [] };
        const buf = add(mul(slots[0], mu), g);
        return { param: sub(p, mul(buf, lr)), slots: [buf] };
      });
    },
  };
}

/** The global L2 norm of several gradients (a scalar). */
export function globalNorm(grads: readonly Value[]): Value {
  return sqrt(sum(...grads.map((d) => reduceSum(mul(d, d), d.shape.map((_, i) => i)))));
}

/**
 * Scales gradients by min(1, maxNorm / (norm + 1e-6)) as PyTorch's `clip_grad_norm_`, and returns the norm
 * measured before clipping.
 */
export function clipByGlobalNorm(grads: readonly Value[], maxNorm: number): { grads: Value[]; norm: Value } {
  if (!(maxNorm > 0)) throw new Error(`'maxGradNorm' must be positive, got ${maxNorm}`);
  const norm = globalNorm(grads);
  const scale = minimum(div(maxNorm, add(norm, 1e-6)), 1);
  return { grads: grads.map((d) => mul(d, scale)), norm };
}

/**
 * The largest magnitude among several values (a scalar), NaN or infinite when any element is: the training loop
 * reads it each step to tell a run that diverged without downloading the parameters. ReduceMax need not propagate
 * NaN, so a zero multiple of the sum of squares is added, which does.
 */
export function maxMagnitude(xs: readonly Value[]): Value {
  const squares = xs.map((x) => mul(x, x));
  const axes = (x: Value) => x.shape.map((_, i) => i);
  const max = squares.map((q) => reduceMax(q, axes(q))).reduce((a, b) => maximum(a, b));
  return sqrt(add(max, mul(sum(...squares.map((q) => reduceSum(q, axes(q)))), 0)));
}

/** Parameters updated as one ({@link packStates}): the joined state, and how to cut its update back apart. */
export interface Packing {
  readonly packed: ParamState;
  unpack(update: ParamUpdate): ParamUpdate[];
}

/**
 * Many parameters as one: each parameter, gradient and slot flattened, and the group's joined into one vector
 * [P] (P the group's element count), with `unpack` cutting an update of that vector back into the parameters'
 * shapes; a lone parameter stays as it is. For an elementwise optimizer this is a pure re-arrangement that makes
 * the update, the gradient norm, the clipping and the magnitude check one chain of nodes per packed group instead
 * of one per tensor ({@link applyOptimizer} packs {@link PACKED_TENSORS} at a time): a 1B model's all-layer LoRA
 * step (88 tensors) has 6,694 nodes instead of 7,849, and onnxruntime's session creation, whose allocation
 * planner costs more than linearly in the number of values, is that much shorter (BENCHMARKS.md, "Step time
 * against the peer on this machine"). Null when the tensors' shapes are not all static or their types differ.
 */
export function packStates(states: readonly ParamState[]): Packing | null {
  if (states.length === 1) return { packed: states[0], unpack: (update) => [update] };
  const sizes = states.map((s) =>
    s.param.shape.reduce<number | null>((n, d) => n === null || typeof d !== "number" ? null : n * d, 1)
  );
  if (sizes.some((n) => n === null) || new Set(states.map((s) => s.param.dtype)).size !== 1) return null;
  const flat = sizes as number[];
  const join = (vs: Value[]) => concat(vs.map((v, i) => v.shape.length === 1 ? v : reshape(v, [flat[i]])), 0); // [P]
  const cut = (v: Value) =>
    split(v, flat, 0).map((part, i) => { // each [n_i] → the parameter's shape
      const shape = states[i].param.shape;
      return shape.length === 1 ? part : reshape(part, shape);
    });
  const packed: ParamState = {
    param: join(states.map((s) => s.param)),
    grad: join(states.map((s) => s.grad)),
    slots: states[0].slots.map((_, j) => join(states.map((s) => s.slots[j]))),
  };
  return {
    packed,
    unpack(update) {
      const params = cut(update.param);
      const slots = update.slots.map(cut);
      return params.map((param, i) => ({ param, slots: slots.map((parts) => parts[i]) }));
    },
  };
}

/**
 * Tensors per packed vector. A Split or Concat binds one buffer per tensor, and onnxruntime's WebGPU kernels take
 * at most 16 storage buffers (a Split of 42 parameters failed there with "Too many storage buffers in shader").
 */
export const PACKED_TENSORS = 8;

/** States packed {@link PACKED_TENSORS} at a time, in order; null when some group cannot be packed. */
function packInGroups(states: readonly ParamState[]): Packing[] | null {
  const groups: Packing[] = [];
  for (let i = 0; i < states.length; i += PACKED_TENSORS) {
    const packing = packStates(states.slice(i, i + PACKED_TENSORS));
    if (!packing) return null;
    groups.push(packing);
  }
  return groups;
}

/**
 * Clips (when the optimizer asks for it) and applies the update; also returns the pre-clip gradient norm and the
 * largest magnitude among the updated parameters. An elementwise optimizer updates the group as packed vectors
 * of {@link PACKED_TENSORS} tensors each ({@link packStates}).
 */
export function applyOptimizer(
  optimizer: Optimizer,
  states: readonly ParamState[],
  inputs: StepInputs,
): { updates: ParamUpdate[]; gradNorm: Value; paramMax: Value } {
  const packings = optimizer.elementwise ? packInGroups(states) : null;
  const work = packings ? packings.map((p) => p.packed) : states;
  const done = (updates: ParamUpdate[], gradNorm: Value) => ({
    updates: packings ? packings.flatMap((p, i) => p.unpack(updates[i])) : updates,
    gradNorm,
    paramMax: maxMagnitude(updates.map((u) => u.param)),
  });
  if (optimizer.maxGradNorm === undefined) {
    return done(optimizer.update(work, inputs), globalNorm(work.map((s) => s.grad)));
  }
  const { grads, norm } = clipByGlobalNorm(work.map((s) => s.grad), optimizer.maxGradNorm);
  const clipped = work.map((s, i) => ({ ...s, grad: grads[i] }));
  return done(optimizer.update(clipped, inputs), norm);
}

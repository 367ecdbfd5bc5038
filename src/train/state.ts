/**
 * What a host-side trainer keeps between steps ({@link TrainerState}), shared by the fused train loop
 * ({@link ./step.ts}) and the accumulating one ({@link ./accumulate.ts}).
 *
 * @module
 */

import { DeviceTensor, download, type HostTensor, hostTensor, type Tensor } from "../runtime/session.ts";
import { DynamicLossScale, LOSS_SCALER_STATE, type LossScaleOptions } from "./loss_scale.ts";

/**
 * The state a trainer starts from: every parameter from `initial` (an error names a missing one), and each
 * optimizer slot from `initial` when given (a resumed run), else zeros shaped like its parameter.
 */
export function initialState(
  params: readonly string[],
  slotOwner: Readonly<Record<string, string>>,
  initial: Readonly<Record<string, HostTensor>>,
): Record<string, HostTensor> {
  const state: Record<string, HostTensor> = {};
  for (const name of params) {
    if (!initial[name]) throw new Error(`no initial value for parameter '${name}'`);
    state[name] = initial[name];
  }
  for (const [slot, owner] of Object.entries(slotOwner)) {
    state[slot] = initial[slot] ?? hostTensor(initial[owner].dtype, initial[owner].dims);
  }
  return state;
}

/**
 * What a host-side trainer keeps between steps, for the fused {@link TrainLoop} and the accumulating loop alike:
 * parameters and optimizer slots, the steps taken, and for a float16 step the dynamic loss scale. One place
 * decides the optimizer's step number, which update a non-finite gradient drops, and what a checkpoint saves.
 */
export class TrainerState {
  /** Parameters and slots by input name: in host memory, or in device memory (see {@link TrainLoop}). */
  readonly tensors: Record<string, Tensor>;
  readonly #params: readonly string[];
  readonly #scaler?: DynamicLossScale;
  /** The tensors before the last update, kept (on the device too) until the next one. */
  #previous: Record<string, Tensor> = {};
  #steps: number;

  /**
   * `initial` gives every parameter (slots, and the scaler's state, start fresh unless given: a resumed run);
   * `lossScale`, when given, keeps a dynamic loss scale (the step takes a loss-scale input).
   */
  constructor(
    params: readonly string[],
    slotOwner: Readonly<Record<string, string>>,
    initial: Readonly<Record<string, HostTensor>>,
    steps: number,
    lossScale?: LossScaleOptions,
  ) {
    this.#params = params;
    this.#steps = steps;
    this.tensors = initialState(params, slotOwner, initial);
    if (lossScale) this.#scaler = new DynamicLossScale(lossScale, initial[LOSS_SCALER_STATE], steps);
  }

  /** Steps taken so far, each a batch (an update dropped under float16 loss scaling counts too). */
  get steps(): number {
    return this.#steps;
  }

  /** The optimizer's 1-based step number: it counts the updates taken, not the dropped ones. */
  get optimizerStep(): number {
    return this.#steps - (this.#scaler?.skipped ?? 0) + 1;
  }

  /** The current loss scale of a float16 step; undefined otherwise. */
  get lossScale(): number | undefined {
    return this.#scaler?.scale;
  }

  /**
   * Ends a step: with a loss scale, whether its gradients were all finite decides if its update is kept (and the
   * scale halves when not); returns whether to keep it. The step counts either way.
   */
  finishStep(finite: boolean): boolean {
    const keep = this.#scaler?.update(finite) ?? true;
    this.#steps++;
    return keep;
  }

  /**
   * Takes a step's new values (`next` by input name; none for a dropped update, whose device buffers are freed).
   * Device buffers are freed once neither the state nor the one before it holds them.
   */
  update(next: Readonly<Record<string, Tensor>>, keep: boolean): void {
    const before = { ...this.tensors };
    for (const [name, t] of Object.entries(next)) {
      if (keep) this.tensors[name] = t;
      else if (t instanceof DeviceTensor) t.dispose();
    }
    const live = new Set([...Object.values(before), ...Object.values(this.tensors)]);
    for (const t of Object.values(this.#previous)) if (t instanceof DeviceTensor && !live.has(t)) t.dispose();
    this.#previous = before;
  }

  /** Current parameter values by name, in host memory (downloaded from the device). */
  async params(): Promise<Record<string, HostTensor>> {
    const params: Record<string, HostTensor> = {};
    for (const p of this.#params) params[p] = await download(this.tensors[p]);
    return params;
  }

  /** Parameters, optimizer slots and the loss scaler's state, by name (what a checkpoint saves), in host memory. */
  checkpoint(): Promise<Record<string, HostTensor>> {
    return this.#download(this.tensors);
  }

  /** {@link TrainerState.checkpoint} before the last update (the current one before any): a diverged run's. */
  previous(): Promise<Record<string, HostTensor>> {
    return this.#download(Object.keys(this.#previous).length ? this.#previous : this.tensors);
  }

  async #download(tensors: Record<string, Tensor>): Promise<Record<string, HostTensor>> {
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(tensors)) out[name] = await download(t);
    return { ...out, ...(this.#scaler && { [LOSS_SCALER_STATE]: this.#scaler.state() }) };
  }
}

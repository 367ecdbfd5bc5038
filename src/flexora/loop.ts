/**
 * The step loop both stages share: runs a {@link Trainer} for a number of steps, stops when training diverges
 * (keeping the last good state), reports progress, checkpoints every N steps, at the end and when stopped, and
 * resumes from a checkpoint, its time counted with the earlier segments'.
 *
 * @module
 */

import type { HostTensor } from "../runtime/session.ts";
import type { StepResult } from "../train/step.ts";
import { loadStageCheckpoint, saveCheckpoint, type Stage, type StageRecord } from "./checkpoint.ts";
import { DivergedError, eta, type ProgressEvent, type RunHooks, StoppedError } from "./progress.ts";

/** The trainer a stage drives: a {@link TrainLoop} or an accumulating one. */
export interface Trainer {
  readonly steps: number;
  /** The trained values (downloaded when they live in device memory). */
  params(): Promise<Record<string, HostTensor>>;
  /** Parameters and optimizer slots, for checkpoints (downloaded when they live in device memory). */
  state(): Promise<Record<string, HostTensor>>;
  /** The state before the last step (what a diverged run keeps). */
  previousState(): Promise<Record<string, HostTensor>>;
}

/** What one stage's loop needs. */
export interface StageLoop<S extends Stage> {
  readonly stage: S;
  readonly totalSteps: number;
  /** The stage's learning rates by option path (`retrain.lr`), named when training diverges. */
  readonly learningRates: Readonly<Record<string, number>>;
  /** Runs update `s` (0-based) on the trainer. */
  run(step: number): Promise<StepResult>;
  /** Called after each step with its result; returns extra progress fields. */
  after(step: number, result: StepResult): Promise<Partial<ProgressEvent>>;
  /** The stage's record for the checkpoint (history so far, …). */
  record(): StageRecord<S>;
  /** Called once per epoch boundary reached (after step `s`); may stop the stage early by returning true. */
  endOfEpoch?(step: number): Promise<boolean>;
  /** Steps per epoch (for endOfEpoch). */
  readonly stepsPerEpoch?: number;
}

/** Where a stage continues from. */
export interface ResumePoint<S extends Stage> {
  readonly step: number;
  readonly tensors: Record<string, HostTensor>;
  readonly record: StageRecord<S>;
  /** Seconds the stage ran before. */
  readonly seconds: number;
}

/**
 * A trained value past this magnitude means the updates blew up: LoRA weights and gate logits of a healthy run
 * stay orders of magnitude below it, and past it activations overflow float32 within a few layers.
 */
export const MAX_TRAINED_MAGNITUDE = 1e4;

/** A checkpoint to continue from, if `hooks.resume` and one of this stage exists. */
export async function resumePoint<S extends Stage>(
  stage: S,
  hooks: RunHooks,
): Promise<ResumePoint<S> | null> {
  if (!hooks.resume || !hooks.checkpointDir) return null;
  // No checkpoint yet: start fresh. One that exists but cannot be read is an error, never silently skipped.
  const found = await loadStageCheckpoint(hooks.checkpointDir, stage);
  return found && {
    step: found.meta.step,
    tensors: found.tensors,
    record: found.meta.record,
    seconds: found.meta.seconds ?? 0,
  };
}

/**
 * Why a step's result means the run diverged, or null when it is healthy. Reads only the scalars the step graph
 * returns (losses, gradient norms, the largest trained magnitude), so parameters kept in device memory are not
 * downloaded each step; `worst` names the largest trained value, read only when the magnitude check trips.
 */
export async function divergence(
  result: StepResult,
  worst: () => Promise<{ name: string; value: number }>,
): Promise<string | null> {
  const losses = Object.entries(result.losses);
  // float16: when the loss scaler dropped the update (its gradients overflowed), the losses of later groups were
  // taken at the updated weights (the search's gate loss, at w′) and say nothing; the first group's loss, taken
  // before any update, still must be finite.
  const bad = (result.skipped ? losses.slice(0, 1) : losses).find(([, v]) => !Number.isFinite(v));
  if (bad) return `the ${bad[0]} loss became ${bad[1]}`;
  if (result.skipped) return null; // the loss scaler handles the overflow
  const norm = Object.entries(result.gradNorms).find(([, v]) => !Number.isFinite(v));
  if (norm) return `the ${norm[0]} gradient norm became ${norm[1]}`;
  const past = Object.values(result.paramMaxes ?? {}).some((v) => !(v <= MAX_TRAINED_MAGNITUDE));
  if (past) {
    const w = await worst();
    if (!Number.isFinite(w.value)) return `${w.name} became ${w.value}`;
    return `${w.name} reached ${Math.abs(w.value).toExponential(1)} (past ${
      MAX_TRAINED_MAGNITUDE.toExponential(0)
    })`;
  }
  const norms = Object.values(result.gradNorms);
  if (norms.length && norms.every((v) => v === 0) && losses.some(([, v]) => v > 0)) {
    return `every gradient is zero while the ${losses[0][0]} loss is ${
      losses[0][1].toFixed(4)
    } (the activations overflowed)`;
  }
  return null;
}

/** The trained value of largest magnitude (the first non-finite one, if any), by tensor name. */
export function largestTrained(params: Record<string, HostTensor>): { name: string; value: number } {
  let worst = { name: "", value: 0 };
  for (const [name, t] of Object.entries(params)) {
    for (const v of t.data as Float32Array) {
      if (!Number.isFinite(v)) return { name, value: v };
      if (Math.abs(v) > Math.abs(worst.value)) worst = { name, value: v };
    }
  }
  return worst;
}

/** Runs the loop from `loop.steps` to `totalSteps`; returns the stage's seconds, earlier segments included. */
export async function runStage<S extends Stage>(
  loop: Trainer,
  s: StageLoop<S>,
  hooks: RunHooks,
  checkpointEvery: number,
  before = 0,
): Promise<number> {
  const started = performance.now();
  const seconds = () => before + (performance.now() - started) / 1000;
  const first = loop.steps;
  // The state is read (downloaded, for a device) only when there is a checkpoint folder to save it in.
  const save = async (state: () => Promise<Record<string, HostTensor>>, step: number) => {
    if (!hooks.checkpointDir) return;
    await saveCheckpoint(hooks.checkpointDir, {
      stage: s.stage,
      step,
      totalSteps: s.totalSteps,
      seconds: seconds(),
      record: s.record(),
    }, await state());
    hooks.onCheckpoint?.({ stage: s.stage, step });
  };
  hooks.onStart?.({ stage: s.stage, step: first, total: s.totalSteps, seconds: before });
  for (let step = loop.steps; step < s.totalSteps; step++) {
    if (hooks.signal?.aborted) {
      await save(() => loop.state(), step);
      throw new StoppedError(`${s.stage} stopped at step ${step} of ${s.totalSteps}`, hooks.checkpointDir);
    }
    const result = await s.run(step);
    const why = await divergence(result, async () => largestTrained(await loop.params()));
    if (why) {
      await save(() => loop.previousState(), step);
      const where = hooks.checkpointDir
        ? `; the last good state (after step ${step}) is in ${hooks.checkpointDir}`
        : "";
      const rates = Object.entries(s.learningRates).map(([k, v]) => `${k} ${v}`).join(", ");
      throw new DivergedError(
        `${s.stage}: training diverged at step ${
          step + 1
        }: ${why}; the learning rate is likely too high (${rates})${where}`,
      );
    }
    const extra = await s.after(step, result);
    const elapsed = seconds();
    hooks.onProgress?.({
      stage: s.stage,
      step: step + 1,
      total: s.totalSteps,
      loss: result.loss,
      elapsed,
      eta: eta(elapsed - before, step + 1 - first, s.totalSteps - first),
      ...extra,
    });
    if (checkpointEvery > 0 && (step + 1) % checkpointEvery === 0) await save(() => loop.state(), step + 1);
    if (s.endOfEpoch && s.stepsPerEpoch && (step + 1) % s.stepsPerEpoch === 0 && await s.endOfEpoch(step)) {
      break;
    }
  }
  await save(() => loop.state(), loop.steps);
  return seconds();
}

/**
 * The step loop both stages share: runs a {@link TrainLoop} for a number of steps, stops on a non-finite loss
 * (keeping the last good state), reports progress, checkpoints every N steps, at the end and when stopped, and
 * resumes from a checkpoint.
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
  /** Parameters and optimizer slots, for checkpoints. */
  state(): Record<string, HostTensor>;
}

/** What one stage's loop needs. */
export interface StageLoop<S extends Stage> {
  readonly stage: S;
  readonly totalSteps: number;
  /** Runs update `s` (0-based) on the trainer. */
  run(step: number): Promise<StepResult>;
  /** Called after each step with its result; returns extra progress fields. */
  after(step: number, result: StepResult): Partial<ProgressEvent>;
  /** The stage's record for the checkpoint (history so far, …). */
  record(): StageRecord<S>;
  /** Called once per epoch boundary reached (after step `s`); may stop the stage early by returning true. */
  endOfEpoch?(step: number): Promise<boolean>;
  /** Steps per epoch (for endOfEpoch). */
  readonly stepsPerEpoch?: number;
}

/** A checkpoint to continue from, if `hooks.resume` and one of this stage exists. */
export async function resumePoint<S extends Stage>(
  stage: S,
  hooks: RunHooks,
): Promise<{ step: number; tensors: Record<string, HostTensor>; record: StageRecord<S> } | null> {
  if (!hooks.resume || !hooks.checkpointDir) return null;
  // No checkpoint yet: start fresh. One that exists but cannot be read is an error, never silently skipped.
  const found = await loadStageCheckpoint(hooks.checkpointDir, stage);
  return found && { step: found.meta.step, tensors: found.tensors, record: found.meta.record };
}

/** Runs the loop from `loop.steps` to `totalSteps`. */
export async function runStage<S extends Stage>(
  loop: Trainer,
  s: StageLoop<S>,
  hooks: RunHooks,
  checkpointEvery: number,
): Promise<void> {
  const started = performance.now();
  const first = loop.steps;
  const save = async (state: Record<string, HostTensor>, step: number) => {
    if (!hooks.checkpointDir) return;
    await saveCheckpoint(hooks.checkpointDir, {
      stage: s.stage,
      step,
      totalSteps: s.totalSteps,
      record: s.record(),
    }, state);
  };
  for (let step = loop.steps; step < s.totalSteps; step++) {
    if (hooks.signal?.aborted) {
      await save(loop.state(), step);
      throw new StoppedError(`${s.stage} stopped at step ${step} of ${s.totalSteps}`, hooks.checkpointDir);
    }
    const before = loop.state();
    const result = await s.run(step);
    const bad = Object.entries(result.losses).find(([, v]) => !Number.isFinite(v));
    if (bad) {
      await save(before, step);
      const where = hooks.checkpointDir
        ? `; the last good state (after step ${step}) is in ${hooks.checkpointDir}`
        : "";
      throw new DivergedError(`${s.stage}: the ${bad[0]} loss became ${bad[1]} at step ${step + 1}${where}`);
    }
    const extra = s.after(step, result);
    const elapsed = (performance.now() - started) / 1000;
    hooks.onProgress?.({
      stage: s.stage,
      step: step + 1,
      total: s.totalSteps,
      loss: result.loss,
      elapsed,
      eta: eta(elapsed, step + 1 - first, s.totalSteps - first),
      ...extra,
    });
    if (checkpointEvery > 0 && (step + 1) % checkpointEvery === 0) await save(loop.state(), step + 1);
    if (s.endOfEpoch && s.stepsPerEpoch && (step + 1) % s.stepsPerEpoch === 0 && await s.endOfEpoch(step)) {
      break;
    }
  }
  await save(loop.state(), loop.steps);
}

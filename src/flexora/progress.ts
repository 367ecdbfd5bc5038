/**
 * Progress of long calls, and how they are stopped.
 *
 * @module
 */

/** One progress report. */
export interface ProgressEvent {
  readonly stage: "search" | "retrain" | "evaluate" | "export";
  /** Updates done in this stage, and in all. */
  readonly step: number;
  readonly total: number;
  /** Training loss of the last step; validation loss of the last gate step (search) or of the epoch (evaluate). */
  readonly loss?: number;
  readonly valLoss?: number;
  /** Gate values per layer after the last step (search). */
  readonly gates?: readonly number[];
  /** Gate logits per layer after the last step (search): what the selection rule reads. */
  readonly logits?: readonly number[];
  /** Seconds since the stage started, and the estimate of what remains. */
  readonly elapsed: number;
  readonly eta: number;
  /** A free-form line (evaluation results, warnings). */
  readonly message?: string;
}

/** What a run's history keeps of a progress event: the points its charts draw. */
export type HistoryPoint = Pick<ProgressEvent, "stage" | "step" | "loss" | "valLoss" | "gates" | "logits">;

/**
 * The history point of an event, or null for events a history skips (exports, and evaluations without a
 * validation loss).
 *
 * @example
 * ```ts
 * import { historyPoint } from "./progress.ts";
 * const e = { stage: "search", step: 1, total: 2, loss: 2.5, gates: [1.2, 0.8], elapsed: 1, eta: 1 } as const;
 * if (historyPoint(e)?.gates?.length !== 2) throw new Error("a search step keeps its gates");
 * if (historyPoint({ ...e, stage: "export" }) !== null) throw new Error("exports are not drawn");
 * ```
 */
export function historyPoint(e: ProgressEvent): HistoryPoint | null {
  const drawn = e.stage === "search" || e.stage === "retrain" ||
    (e.stage === "evaluate" && e.valLoss !== undefined);
  if (!drawn) return null;
  return { stage: e.stage, step: e.step, loss: e.loss, valLoss: e.valLoss, gates: e.gates, logits: e.logits };
}

/** A stage beginning: from step 0, or from its checkpoint when resumed. */
export interface StageStart {
  readonly stage: "search" | "retrain";
  /** The step it starts from (the checkpoint's when resumed). */
  readonly step: number;
  readonly total: number;
  /** Seconds the stage ran in earlier segments (0 when it starts fresh). */
  readonly seconds: number;
}

/** What long calls accept: a progress callback, an abort signal, and where to keep checkpoints. */
export interface RunHooks {
  onProgress?: (event: ProgressEvent) => void;
  /** Called when a stage begins, before its first step. */
  onStart?: (start: StageStart) => void;
  /** Stops the run between steps; the last state is checkpointed first when a checkpoint dir is set. */
  signal?: AbortSignal;
  /** Directory for this stage's checkpoint (written every `checkpointEvery` steps, at the end, and on stop). */
  checkpointDir?: string;
  /** Called after each checkpoint is written (complete in `checkpointDir`), with the step it holds. */
  onCheckpoint?: (saved: { readonly stage: "search" | "retrain"; readonly step: number }) => void;
  /** Continue from the checkpoint in `checkpointDir`. */
  resume?: boolean;
}

/** Thrown when a run is stopped through its signal; `checkpoint` says where its state was kept. */
export class StoppedError extends Error {
  override name = "StoppedError";
  readonly checkpoint?: string;
  constructor(message: string, checkpoint?: string) {
    super(message);
    this.checkpoint = checkpoint;
  }
}

/**
 * Thrown when training diverges (a loss or gradient that is not finite, trained values blown up, or every
 * gradient zero while the loss is not); names the step, the learning rates and where the last good state was
 * kept.
 */
export class DivergedError extends Error {
  override name = "DivergedError";
}

/** Seconds-based ETA from steps done so far. */
export function eta(elapsed: number, done: number, total: number): number {
  return done > 0 ? (elapsed / done) * (total - done) : 0;
}

/**
 * The records a run keeps and writes (gate values per search step, metrics per retraining epoch): each a type and
 * the zod schema that reads it back, for the code that makes them, the checkpoint that saves them
 * ({@link ./checkpoint.ts}) and `flexora.json` ({@link ./flexora_json.ts}).
 *
 * @module
 */

import { z } from "zod";
import { jsonNumber } from "../util/json_file.ts";

const int = z.number({ error: "must be an integer" }).int({ error: "must be an integer" });
const numbers = z.array(jsonNumber, { error: "must be a list of numbers" });

/** Gate values at one search step. */
export interface GateRecord {
  readonly step: number;
  readonly logits: number[];
  readonly gates: number[];
  readonly trainLoss: number;
  readonly valLoss: number;
  /** Norm of the gate-logit hypergradient the step took (absent in records written before it was kept). */
  readonly gateGradNorm?: number;
  /**
   * True when the float16 loss scaler dropped the step's update (its gradients overflowed): `valLoss` and
   * `gateGradNorm`, taken at weights the step did not keep, are then not finite.
   */
  readonly skipped?: boolean;
}
/** Reads a {@link GateRecord}. */
export const GateRecord: z.ZodType<GateRecord> = z.object({
  step: int,
  logits: numbers,
  gates: numbers,
  trainLoss: jsonNumber,
  valLoss: jsonNumber,
  gateGradNorm: jsonNumber.optional(),
  skipped: z.boolean().optional(),
});

/** Metrics of one evaluation. */
export interface EvalMetrics {
  /** Mean loss per completion token. */
  readonly loss: number;
  /** Multiple-choice accuracy, when the rows have choices and labels. */
  readonly accuracy?: number;
  readonly n: number;
}
/** Reads {@link EvalMetrics}. */
export const EvalMetrics: z.ZodType<EvalMetrics> = z.object({
  loss: jsonNumber,
  accuracy: jsonNumber.optional(),
  n: int,
});

/** Metrics after one retraining epoch. */
export interface EpochMetrics {
  readonly epoch: number;
  /** Mean training loss over the epoch's steps. */
  readonly trainLoss: number;
  readonly validation?: EvalMetrics;
  readonly test?: EvalMetrics;
}
/** Reads {@link EpochMetrics}. */
export const EpochMetrics: z.ZodType<EpochMetrics> = z.object({
  epoch: int,
  trainLoss: jsonNumber,
  validation: EvalMetrics.optional(),
  test: EvalMetrics.optional(),
});

/** What the search stage checkpoints beside its tensors: the gate history so far. */
export interface SearchRecord {
  readonly history: GateRecord[];
}
/** Reads a {@link SearchRecord}. */
export const SearchRecord: z.ZodType<SearchRecord> = z.object({
  history: z.array(GateRecord, { error: "must be a list" }),
});

/** What the retraining checkpoints beside its tensors: finished epochs, and the losses of the one running. */
export interface RetrainRecord {
  readonly epochs: EpochMetrics[];
  readonly epochLosses: number[];
}
/** Reads a {@link RetrainRecord}. */
export const RetrainRecord: z.ZodType<RetrainRecord> = z.object({
  epochs: z.array(EpochMetrics, { error: "must be a list" }),
  epochLosses: numbers,
});

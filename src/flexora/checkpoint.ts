/**
 * Training checkpoints: every state tensor (LoRA weights, gate logits, optimizer moments) in `state.safetensors`,
 * and the position in the run (stage, step, the stage's record) in `checkpoint.json`. This module owns both files.
 * A checkpoint directory is replaced atomically: the new one is written beside it and renamed over it, so a crash
 * leaves the old or the new.
 *
 * The data order is a pure function of the seed and the epoch, so the step number is the whole data position.
 *
 * @module
 */

import { join } from "node:path";
import { z } from "zod";
import { readHeader, readTensorF32, writeSafetensors } from "../model/safetensors.ts";
import { type HostTensor, hostTensor } from "../runtime/session.ts";
import { jsonText, parseJsonValue, readJsonFile } from "../util/json_file.ts";
import { RetrainRecord, SearchRecord } from "./records.ts";

/** Format version of `checkpoint.json`. */
export const CHECKPOINT_VERSION = 1;

/** The files of a checkpoint directory. */
export const CHECKPOINT_FILE = "checkpoint.json";
export const STATE_FILE = "state.safetensors";

/** The run's own manifest in a checkpoint folder: how it was started, so `--resume` starts it the same way. */
export const RUN_FILE = "run.json";

/** What {@link RUN_FILE} holds: the command's flag values and the options they resolved to. */
export interface RunManifest {
  readonly args: Readonly<Record<string, unknown>>;
  readonly options: unknown;
}

const RunManifestSchema: z.ZodType<RunManifest> = z.object({
  args: z.record(z.string(), z.unknown(), { error: "must be an object of the command's flag values" }),
  options: z.unknown(),
});

/** Writes `<dir>/run.json`. */
export async function writeRunManifest(dir: string, run: RunManifest): Promise<void> {
  await Deno.writeTextFile(join(dir, RUN_FILE), jsonText(run));
}

/** Reads `<dir>/run.json`: null when there is none, an error naming the file and field when it is damaged. */
export async function readRunManifest(dir: string): Promise<RunManifest | null> {
  const file = join(dir, RUN_FILE);
  const exists = await Deno.stat(file).then(() => true, (e) => {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  });
  return exists ? await readJsonFile(file, RunManifestSchema, { what: "run manifest" }) : null;
}

/** What each stage records beside its tensors. */
export interface StageRecords {
  readonly search: SearchRecord;
  readonly retrain: RetrainRecord;
}

/** The stages that checkpoint. */
export type Stage = keyof StageRecords;

/** What stage `S` records beside its tensors. */
export type StageRecord<S extends Stage> = StageRecords[S];

/** Each stage's record schema. */
const RECORDS: { readonly [S in Stage]: z.ZodType<StageRecords[S]> } = {
  search: SearchRecord,
  retrain: RetrainRecord,
};

const count = z.number({ error: "must be a non-negative integer" }).int({
  error: "must be a non-negative integer",
})
  .nonnegative({ error: "must be a non-negative integer" });

/** `checkpoint.json`, with the record left to the stage's schema. */
const version = z.literal(CHECKPOINT_VERSION, {
  error: `must be ${CHECKPOINT_VERSION}, the checkpoint format this flexora reads`,
});
const Manifest = z.looseObject({ version }).pipe(z.object({
  version,
  stage: z.enum(["search", "retrain"], { error: 'must be "search" or "retrain"' }),
  /** Updates taken in this stage. */
  step: count,
  totalSteps: count,
  seconds: z.number({ error: "must be a non-negative number" }).nonnegative({
    error: "must be a non-negative number",
  }).optional(),
  record: z.unknown(),
}));

/** Where a stage stands. */
export interface CheckpointMeta<S extends Stage = Stage> {
  readonly version: number;
  readonly stage: S;
  /** Updates taken in this stage. */
  readonly step: number;
  readonly totalSteps: number;
  /** Seconds the stage has run, over every segment so far (absent in checkpoints from before it was kept). */
  readonly seconds?: number;
  /** The stage's record (gate history, finished epochs, …). */
  readonly record: StageRecord<S>;
}

/** Whether `dir` holds a checkpoint (its `checkpoint.json`); an error other than "not found" is thrown. */
export async function hasCheckpoint(dir: string): Promise<boolean> {
  return await Deno.stat(join(dir, CHECKPOINT_FILE)).then(() => true, (e) => {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  });
}

/** Writes `tensors` and `meta` to `dir`, replacing what was there atomically. */
export async function saveCheckpoint<S extends Stage>(
  dir: string,
  meta: Omit<CheckpointMeta<S>, "version">,
  tensors: Readonly<Record<string, HostTensor>>,
): Promise<void> {
  const tmp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await writeSafetensors(
      join(tmp, STATE_FILE),
      Object.entries(tensors).map(([name, t]) => ({
        name,
        dtype: "F32" as const,
        shape: t.dims,
        data: t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array),
      })),
    );
    await Deno.writeTextFile(join(tmp, CHECKPOINT_FILE), jsonText({ version: CHECKPOINT_VERSION, ...meta }));
    const old = `${dir}.old-${crypto.randomUUID().slice(0, 8)}`;
    const existed = await Deno.rename(dir, old).then(() => true, () => false);
    await Deno.rename(tmp, dir);
    if (existed) await Deno.remove(old, { recursive: true });
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** Reads the manifest of the checkpoint in `dir`; errors name the file and the field. */
export async function readCheckpointMeta(dir: string): Promise<CheckpointMeta> {
  const file = join(dir, CHECKPOINT_FILE);
  const manifest = await readJsonFile(file, Manifest, { what: "checkpoint" });
  const { record } = parseJsonValue(manifest, z.object({ record: RECORDS[manifest.stage] }), {
    file,
    what: "",
  });
  return { ...manifest, record } as CheckpointMeta;
}

/** Reads a checkpoint written by {@link saveCheckpoint}; errors name the file. */
export async function loadCheckpoint(
  dir: string,
): Promise<{ meta: CheckpointMeta; tensors: Record<string, HostTensor> }> {
  const meta = await readCheckpointMeta(dir);
  const tensors: Record<string, HostTensor> = {};
  for (const info of (await readHeader(join(dir, STATE_FILE))).tensors) {
    tensors[info.name] = hostTensor("float32", info.shape, await readTensorF32(info));
  }
  return { meta, tensors };
}

/** The checkpoint of stage `stage` in `dir`: null when there is none or it belongs to another stage. */
export async function loadStageCheckpoint<S extends Stage>(
  dir: string,
  stage: S,
): Promise<{ meta: CheckpointMeta<S>; tensors: Record<string, HostTensor> } | null> {
  if (!(await hasCheckpoint(dir))) return null;
  const found = await loadCheckpoint(dir);
  return isStage(found.meta, stage) ? { meta: found.meta, tensors: found.tensors } : null;
}

function isStage<S extends Stage>(meta: CheckpointMeta, stage: S): meta is CheckpointMeta<S> {
  return meta.stage === stage;
}

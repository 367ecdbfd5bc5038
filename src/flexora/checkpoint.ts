/**
 * Training checkpoints: every state tensor (LoRA weights, gate logits, optimizer moments) in a safetensors file,
 * and the position in the run (stage, step, seed, options) in `checkpoint.json`. A checkpoint directory is
 * replaced atomically: the new one is written beside it and renamed over it, so a crash leaves the old or the new.
 *
 * The data order is a pure function of the seed and the epoch, so the step number is the whole data position.
 *
 * @module
 */

import { join } from "node:path";
import { readHeader, readTensorF32, writeSafetensors } from "../model/safetensors.ts";
import { type HostTensor, hostTensor } from "../runtime/session.ts";

/** Format version of `checkpoint.json`. */
export const CHECKPOINT_VERSION = 1;

/** Where a run stands. */
export interface CheckpointMeta {
  readonly version: number;
  readonly stage: "search" | "retrain";
  /** Updates taken in this stage. */
  readonly step: number;
  readonly totalSteps: number;
  /** Stage-specific record (gate history, selected layers, metrics so far, …). */
  readonly record: Record<string, unknown>;
}

/** Writes `tensors` and `meta` to `dir`, replacing what was there atomically. */
export async function saveCheckpoint(
  dir: string,
  meta: Omit<CheckpointMeta, "version">,
  tensors: Readonly<Record<string, HostTensor>>,
): Promise<void> {
  const tmp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await writeSafetensors(
      join(tmp, "state.safetensors"),
      Object.entries(tensors).map(([name, t]) => ({
        name,
        dtype: "F32" as const,
        shape: t.dims,
        data: t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array),
      })),
    );
    await Deno.writeTextFile(
      join(tmp, "checkpoint.json"),
      JSON.stringify({ version: CHECKPOINT_VERSION, ...meta }, null, 2) + "\n",
    );
    const old = `${dir}.old-${crypto.randomUUID().slice(0, 8)}`;
    const existed = await Deno.rename(dir, old).then(() => true, () => false);
    await Deno.rename(tmp, dir);
    if (existed) await Deno.remove(old, { recursive: true });
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** Reads a checkpoint written by {@link saveCheckpoint}; errors name the file. */
export async function loadCheckpoint(
  dir: string,
): Promise<{ meta: CheckpointMeta; tensors: Record<string, HostTensor> }> {
  const file = join(dir, "checkpoint.json");
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    throw new Error(`${file}: cannot read the checkpoint (${(e as Error).message})`);
  }
  if (meta.version !== CHECKPOINT_VERSION) {
    throw new Error(`${file}: checkpoint format ${meta.version}, this flexora reads ${CHECKPOINT_VERSION}`);
  }
  const tensors: Record<string, HostTensor> = {};
  for (const info of (await readHeader(join(dir, "state.safetensors"))).tensors) {
    tensors[info.name] = hostTensor("float32", info.shape, await readTensorF32(info));
  }
  return { meta, tensors };
}

/**
 * Folders in and out of the store's artifacts: a job's checkpoint folder read while its runner may be writing
 * the next checkpoint, and a stored adapter or checkpoint written back into a folder on another host.
 *
 * A stage's checkpoint is a folder (`search/`, `retrain/`) that the runner replaces by a rename
 * (`src/flexora/checkpoint.ts`), next to its half-written `*.tmp-*` and discarded `*.old-*` folders: only the
 * stage folders are read, and a stage is read again when its manifest changed while its files were read.
 *
 * @module
 */

import { dirname, join, relative } from "node:path";
import { CHECKPOINT_FILE as MANIFEST } from "../../flexora/mod.ts";
import type { ArtifactKind, ArtifactStore, Store } from "./types.ts";

/** Every file under `dir` (path relative to it → bytes), or null when `dir` does not exist. */
export async function readFolder(dir: string): Promise<Map<string, Uint8Array> | null> {
  const files = new Map<string, Uint8Array>();
  const walk = async (at: string): Promise<void> => {
    for await (const e of Deno.readDir(at)) {
      const path = join(at, e.name);
      if (e.isDirectory) await walk(path);
      else if (e.isFile) files.set(relative(dir, path), await Deno.readFile(path));
    }
  };
  try {
    await walk(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return files;
}

/** Writes `files` as the folder `dir`, replacing it whole (written beside it, then renamed into place). */
export async function writeFolder(dir: string, files: ReadonlyMap<string, Uint8Array>): Promise<void> {
  const tmp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    for (const [path, bytes] of files) {
      const file = join(tmp, path);
      if (relative(tmp, file).startsWith("..")) {
        throw new Error(`artifact file '${path}' lies outside its folder`);
      }
      await Deno.mkdir(dirname(file), { recursive: true });
      await Deno.writeFile(file, bytes);
    }
    await Deno.mkdir(tmp, { recursive: true });
    await Deno.remove(dir, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
    await Deno.mkdir(dirname(dir), { recursive: true });
    await Deno.rename(tmp, dir);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

const STAGES = ["search", "retrain"] as const;

/** One stage's checkpoint folder, read whole while the runner may replace it: read again until stable. */
async function readStage(dir: string): Promise<Map<string, Uint8Array> | null> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = await Deno.readFile(join(dir, MANIFEST)).catch(() => null);
    if (!before) return null; // not written yet (or mid-rename: the next event sends it)
    const files = await readFolder(dir).catch(() => null);
    const after = await Deno.readFile(join(dir, MANIFEST)).catch(() => null);
    if (files && after && sameBytes(before, after) && sameBytes(files.get(MANIFEST) ?? null, before)) {
      return files;
    }
  }
  return null;
}

const sameBytes = (a: Uint8Array | null, b: Uint8Array | null) =>
  a !== null && b !== null && a.length === b.length && a.every((x, i) => x === b[i]);

/** A job's checkpoints (every stage's complete folder under `dir`), as artifact files (`<stage>/<file>`). */
export async function readCheckpoints(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const stage of STAGES) {
    for (const [path, bytes] of await readStage(join(dir, stage)) ?? []) out.set(`${stage}/${path}`, bytes);
  }
  return out;
}

/** Seconds of training a stage's manifest records (0 when absent or unreadable): the newer checkpoint has more. */
function secondsOf(manifest: Uint8Array | null | undefined): number {
  try {
    return manifest ? Number(JSON.parse(new TextDecoder().decode(manifest)).seconds) || 0 : 0;
  } catch {
    return 0;
  }
}

/**
 * Writes the stored checkpoints of `job` into `dir`, stage by stage, where the stored one is newer than the
 * folder's (another host trained further); returns whether `dir` now holds any checkpoint.
 */
export async function restoreCheckpoints(
  artifacts: ArtifactStore,
  job: string,
  dir: string,
): Promise<boolean> {
  const stored = await artifacts.get("checkpoint", job);
  let any = false;
  for (const stage of STAGES) {
    const local = await Deno.readFile(join(dir, stage, MANIFEST)).catch(() => null);
    const files = new Map(
      [...stored ?? []].filter(([p]) => p.startsWith(`${stage}/`)).map((
        [p, b],
      ) => [p.slice(stage.length + 1), b]),
    );
    if (files.has(MANIFEST) && secondsOf(files.get(MANIFEST)) > secondsOf(local)) {
      await writeFolder(join(dir, stage), files);
      any = true;
    } else if (local) any = true;
  }
  return any;
}

/**
 * Writes every stored adapter version missing under `root` (`<root>/<name>/<version>`), dated as stored, so the
 * newest version of each name is the same on every host.
 */
export async function syncAdapters(artifacts: ArtifactStore, root: string): Promise<void> {
  for (const { key, updatedAt } of await artifacts.list("adapter")) {
    const dir = join(root, key);
    if (await Deno.stat(dir).then(() => true, () => false)) continue;
    if (await materialize(artifacts, "adapter", key, dir)) {
      await Deno.utime(dir, new Date(), new Date(updatedAt));
    }
  }
}

/** Writes the stored artifact into `dir` unless `dir` exists; false when neither has it. */
export async function materialize(
  artifacts: ArtifactStore,
  kind: ArtifactKind,
  key: string,
  dir: string,
): Promise<boolean> {
  if (await Deno.stat(dir).then(() => true, () => false)) return true;
  const files = await artifacts.get(kind, key);
  if (!files) return false;
  await writeFolder(dir, files);
  return true;
}

/**
 * Copies a job's checkpoints or adapter (`files`, read when called) into the store. A failure costs the other
 * hosts that copy, not the job: it is logged and the job goes on.
 */
export async function keepArtifact(
  store: Store,
  kind: ArtifactKind,
  key: string,
  files: () => Promise<Map<string, Uint8Array> | null>,
): Promise<void> {
  try {
    const found = await files();
    if (found?.size) await store.artifacts.put(kind, key, found);
  } catch (e) {
    console.error(`could not keep the ${kind} '${key}' in the store: ${e instanceof Error ? e.message : e}`);
  }
}

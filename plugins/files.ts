/**
 * Adapter folders that servers read by path (vLLM's resolver directory, LoRAX's adapter directory): copied in
 * atomically (a hidden temporary sibling renamed into place), swapped for a new version, removed, listed.
 * Copies, never symlinks: a server re-reads an evicted adapter from its path, and a link would follow the
 * source folder wherever it goes.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { CONFIG_FILE } from "./adapter.ts";

/** Prefix of the temporary folders this module makes; {@link listFolders} skips them. */
export const TEMP_PREFIX = ".flexora-";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Copies the folder `src` to `dst` (which must not exist), following links so only plain files land. */
async function copyTree(src: string, dst: string): Promise<void> {
  await Deno.mkdir(dst);
  for await (const entry of Deno.readDir(src)) {
    const from = join(src, entry.name), to = join(dst, entry.name);
    const info = entry.isSymlink ? await Deno.stat(from) : entry;
    if (info.isDirectory) await copyTree(from, to);
    else if (info.isFile) await Deno.copyFile(from, to);
  }
}

/**
 * Copies the folder `src` to `<parent>/<name>` so that a reader sees either nothing (or the previous version) or
 * the whole copy. An existing `<parent>/<name>` is swapped out when `replace` is true (there is an instant
 * without the folder between the two renames), and is an error otherwise.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { installCopy } from "./files.ts";
 * const src = await Deno.makeTempDir(), parent = await Deno.makeTempDir();
 * await Deno.writeTextFile(join(src, "adapter_config.json"), "{}");
 * await installCopy(src, parent, "a", { replace: false });
 * if (await Deno.readTextFile(join(parent, "a", "adapter_config.json")) !== "{}") throw new Error("copied");
 * ```
 */
export async function installCopy(
  src: string,
  parent: string,
  name: string,
  options: { replace: boolean },
): Promise<void> {
  await Deno.mkdir(parent, { recursive: true });
  const target = join(parent, name), tmp = join(parent, `${TEMP_PREFIX}tmp-${crypto.randomUUID()}`);
  try {
    await copyTree(src, tmp);
    if (!(await exists(target))) {
      await Deno.rename(tmp, target);
      return;
    }
    if (!options.replace) throw new Error(`${target} already exists`);
    const old = join(parent, `${TEMP_PREFIX}old-${crypto.randomUUID()}`);
    await Deno.rename(target, old);
    await Deno.rename(tmp, target);
    await Deno.remove(old, { recursive: true });
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** Removes `<parent>/<name>` at once (renamed aside, then deleted); false when there was none. */
export async function removeFolder(parent: string, name: string): Promise<boolean> {
  const target = join(parent, name), old = join(parent, `${TEMP_PREFIX}old-${crypto.randomUUID()}`);
  try {
    await Deno.rename(target, old);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  await Deno.remove(old, { recursive: true });
  return true;
}

/** Names of the adapter folders (holding `adapter_config.json`) in `parent`, sorted; [] when it does not exist. */
export async function listFolders(parent: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(parent)) {
      if (!entry.isDirectory || entry.name.startsWith(TEMP_PREFIX)) continue;
      if (await exists(join(parent, entry.name, CONFIG_FILE))) names.push(entry.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return names.sort();
}

/** SHA-256 (hex) of a file, streamed. */
export async function fileDigest(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path); // the stream closes it once read
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** SHA-256 (hex) over a folder's plain files: each name and each content digest, in name order. */
export async function folderDigest(dir: string): Promise<string> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const info = entry.isSymlink ? await Deno.stat(join(dir, entry.name)) : entry;
    if (info.isFile) files.push(entry.name);
  }
  const hash = createHash("sha256");
  for (const name of files.sort()) hash.update(`${name}\0${await fileDigest(join(dir, name))}\n`);
  return hash.digest("hex");
}

/**
 * The Hugging Face cache layout, shared with huggingface_hub and transformers:
 *
 * ```
 * <cacheDir>/models--<org>--<name>/
 *   refs/<revision>                 the commit hash the revision pointed to when last resolved
 *   blobs/<etag>                    file contents, named by sha256 (LFS files) or git blob id (others)
 *   blobs/<etag>.incomplete         a download in progress (resumed with an HTTP range)
 *   snapshots/<commit>/<path>       relative symlink to ../../blobs/<etag>
 * ```
 *
 * @module
 */

import { dirname, join, relative } from "node:path";
import { isCommitHash } from "./id.ts";

/** The cache folder of `repo` (`org/name`). */
export function repoFolder(cacheDir: string, repo: string): string {
  return join(cacheDir, `models--${repo.split("/").join("--")}`);
}

/** The commit `revision` resolves to in the cache: itself when it is a hash, else `refs/<revision>`; or null. */
export async function cachedCommit(folder: string, revision: string): Promise<string | null> {
  if (isCommitHash(revision)) return revision;
  try {
    return (await Deno.readTextFile(join(folder, "refs", revision))).trim() || null;
  } catch {
    return null;
  }
}

/** Records that `revision` (a branch or tag) points to `commit`. */
export async function writeRef(folder: string, revision: string, commit: string): Promise<void> {
  if (isCommitHash(revision)) return;
  const file = join(folder, "refs", revision);
  await Deno.mkdir(dirname(file), { recursive: true });
  await Deno.writeTextFile(file, commit);
}

/** True when `path` exists, following symlinks (a dangling snapshot link is absent). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Makes `snapshots/<commit>/<path>` point to `blobs/<etag>` (a relative symlink, a copy where links fail). */
export async function linkBlob(folder: string, commit: string, path: string, etag: string): Promise<string> {
  const pointer = join(folder, "snapshots", commit, path), blob = join(folder, "blobs", etag);
  await Deno.mkdir(dirname(pointer), { recursive: true });
  await Deno.remove(pointer).catch(() => {});
  try {
    await Deno.symlink(relative(dirname(pointer), blob), pointer);
  } catch {
    await Deno.copyFile(blob, pointer); // filesystems without symlinks, as huggingface_hub does on Windows
  }
  return pointer;
}

/**
 * One file from the Hub into the cache: its metadata from a `HEAD` on the resolve route (ETag, `X-Repo-Commit`,
 * `X-Linked-Etag`, `X-Linked-Size`, the CDN redirect), then its bytes into `blobs/<etag>.incomplete`, resumed
 * with an HTTP range after an interruption, checked against the sha256 the Hub reports for LFS files (and the
 * size for every file), and renamed into place.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { HubError } from "./errors.ts";
import type { HubSettings } from "./settings.ts";

/** What a `HEAD` on a resolve URL tells about one file. */
export interface FileMeta {
  readonly path: string;
  /** Blob name: the sha256 of an LFS file, the git blob id of others. */
  readonly etag: string;
  readonly size: number;
  /** Commit the file was resolved at. */
  readonly commit: string;
  /** Where the bytes are (the CDN location for LFS files). */
  readonly url: string;
  /** True when `etag` is a sha256 of the contents (LFS), which the download is checked against. */
  readonly sha256: boolean;
}

/** Progress of one file's download. */
export interface DownloadProgress {
  readonly file: string;
  readonly received: number;
  readonly total: number;
}

/** Shared by the requests of one download. */
export interface FetchContext {
  readonly settings: HubSettings;
  readonly fetch?: typeof fetch;
  readonly signal?: AbortSignal;
}

/** Headers for `url`: the token goes to the endpoint's origin only, never to a CDN. */
export function hubHeaders(ctx: FetchContext, url: string, extra: Record<string, string> = {}): Headers {
  const h = new Headers({ "user-agent": "flexora", ...extra });
  if (ctx.settings.token && new URL(url).origin === new URL(ctx.settings.endpoint).origin) {
    h.set("authorization", `Bearer ${ctx.settings.token}`);
  }
  return h;
}

/** A HubError for a failed response of `what` (a repo, a file), reading the Hub's `X-Error-Code`. */
export function statusError(ctx: FetchContext, res: Response, repo: string, what: string): HubError {
  const code = res.headers.get("x-error-code") ?? "";
  const page = `${ctx.settings.endpoint}/${repo}`;
  if (res.status === 401 || res.status === 403 || code === "GatedRepo") {
    const why = ctx.settings.token
      ? "the token in HF_TOKEN has no access to it: accept the model's licence on"
      : "it is gated or private: set HF_TOKEN to an access token of an account that accepted its licence on";
    return new HubError("gated", `${what}: ${res.status} ${res.statusText}; ${why} ${page}`);
  }
  if (res.status === 404) {
    const msg = code === "RevisionNotFound"
      ? `${what}: no such revision in ${repo} (a branch, tag or commit; see ${page}/tree/main)`
      : code === "EntryNotFound"
      ? `${what}: no such file in ${repo}`
      : `${what}: no model repository ${repo} on ${ctx.settings.endpoint} (check the id; private ones need HF_TOKEN)`;
    return new HubError("not-found", `${msg} (404)`);
  }
  return new HubError("http", `${what}: ${res.status} ${res.statusText} from ${res.url || page}`);
}

const unquote = (etag: string | null) => etag?.replace(/^W\//, "").replace(/"/g, "") ?? "";

/** `HEAD` on `resolve/<revision>/<path>`, following the Hub's own (same-origin) redirects but not the CDN's. */
export async function fileMeta(
  ctx: FetchContext,
  repo: string,
  revision: string,
  path: string,
): Promise<FileMeta> {
  const fetchFn = ctx.fetch ?? fetch;
  let url = `${ctx.settings.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${path}`;
  for (let hops = 0; hops < 5; hops++) {
    const res = await fetchFn(url, {
      method: "HEAD",
      headers: hubHeaders(ctx, url),
      redirect: "manual",
      signal: ctx.signal,
    });
    const location = res.headers.get("location");
    const linked = res.headers.get("x-linked-etag");
    if (res.status >= 300 && res.status < 400 && location) {
      const next = new URL(location, url).href;
      if (!linked && new URL(next).origin === new URL(url).origin) { // a renamed repo: ask again there
        url = next;
        continue;
      }
    } else if (!res.ok) throw statusError(ctx, res, repo, `${repo}/${path}@${revision}`);
    const etag = unquote(linked ?? res.headers.get("etag"));
    const commit = res.headers.get("x-repo-commit") ?? "";
    const size = Number(res.headers.get("x-linked-size") ?? res.headers.get("content-length"));
    if (!etag || !commit || !Number.isFinite(size)) {
      throw new HubError(
        "http",
        `${url}: the answer lacks ETag, X-Repo-Commit or a size; is HF_ENDPOINT (${ctx.settings.endpoint}) a Hub?`,
      );
    }
    const target = res.status >= 300 && location ? new URL(location, url).href : url;
    return { path, etag, size, commit, url: target, sha256: /^[0-9a-f]{64}$/.test(etag) };
  }
  throw new HubError("http", `${url}: too many redirects`);
}

function isDiskFull(e: unknown): boolean {
  return (e as { code?: string })?.code === "ENOSPC" || /no space left/i.test(String((e as Error)?.message));
}

/** sha256 of the first bytes already in `file`. */
async function hashFile(file: string): Promise<ReturnType<typeof createHash>> {
  const hash = createHash("sha256");
  using f = await Deno.open(file, { read: true });
  for await (const chunk of f.readable) hash.update(chunk);
  return hash;
}

/** Options of {@link downloadBlob}. */
export interface BlobOptions extends FetchContext {
  onProgress?: (p: DownloadProgress) => void;
  /** Extra attempts after an interrupted transfer, each resuming with a range (default 3). */
  retries?: number;
}

/**
 * Downloads `meta`'s bytes to `<blobsDir>/<etag>` unless there already; returns that path. A partial
 * `.incomplete` file from an earlier attempt is resumed; bytes that do not match are deleted.
 */
export async function downloadBlob(meta: FileMeta, blobsDir: string, options: BlobOptions): Promise<string> {
  const blob = join(blobsDir, meta.etag), partial = `${blob}.incomplete`;
  await Deno.mkdir(blobsDir, { recursive: true });
  const retries = options.retries ?? 3;
  for (let attempt = 0;; attempt++) {
    try {
      await transfer(meta, partial, options);
      break;
    } catch (e) {
      if (!(e instanceof HubError) || e.kind !== "interrupted" || attempt >= retries) throw e;
    }
  }
  await verify(meta, partial);
  await Deno.rename(partial, blob);
  return blob;
}

/** Appends the missing bytes to `partial` (all of them when the server ignores the range). */
async function transfer(meta: FileMeta, partial: string, options: BlobOptions): Promise<void> {
  const fetchFn = options.fetch ?? fetch;
  const have = await Deno.stat(partial).then((s) => s.size, () => 0);
  if (have === meta.size && meta.size > 0) return;
  const range: Record<string, string> = have > 0 && have < meta.size ? { range: `bytes=${have}-` } : {};
  let res: Response;
  try {
    res = await fetchFn(meta.url, { headers: hubHeaders(options, meta.url, range), signal: options.signal });
  } catch (e) {
    if (options.signal?.aborted) throw e;
    throw new HubError("interrupted", `${meta.path}: ${(e as Error).message}`, { cause: e });
  }
  if (!res.ok) {
    await res.body?.cancel();
    if (res.status === 416) { // what we hold is longer than the file: start over
      await Deno.remove(partial).catch(() => {});
      throw new HubError("interrupted", `${meta.path}: range not satisfiable; restarting`);
    }
    throw statusError(options, res, meta.path, `downloading ${meta.path}`);
  }
  const resumed = res.status === 206;
  let received = resumed ? have : 0;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(partial, { write: true, create: true, append: resumed, truncate: !resumed });
  } catch (e) {
    await res.body?.cancel();
    throw writeError(e, partial);
  }
  try {
    for await (const chunk of res.body ?? new ReadableStream<Uint8Array>()) {
      try {
        await writeAll(file, chunk);
      } catch (e) {
        throw writeError(e, partial);
      }
      received += chunk.length;
      options.onProgress?.({ file: meta.path, received, total: meta.size });
    }
  } catch (e) {
    if (e instanceof HubError || options.signal?.aborted) throw e;
    throw new HubError("interrupted", `${meta.path}: connection lost after ${received} bytes`, { cause: e });
  } finally {
    file.close();
  }
  if (received < meta.size) {
    throw new HubError(
      "interrupted",
      `${meta.path}: connection closed after ${received} of ${meta.size} bytes`,
    );
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
}

function writeError(e: unknown, partial: string): unknown {
  if (!isDiskFull(e)) return e;
  return new HubError(
    "disk-full",
    `disk full while writing ${partial}: free space there or point HF_HUB_CACHE at a larger disk; ` +
      "the bytes received are kept and the download resumes on the next run",
    { cause: e },
  );
}

/** Checks size and, for LFS files, sha256; deletes `partial` when they do not match. */
async function verify(meta: FileMeta, partial: string): Promise<void> {
  const size = (await Deno.stat(partial)).size;
  const digest = meta.sha256 ? (await hashFile(partial)).digest("hex") : meta.etag;
  if (size === meta.size && digest === meta.etag) return;
  await Deno.remove(partial);
  const what = size !== meta.size
    ? `${size} bytes, expected ${meta.size}`
    : `sha256 ${digest}, expected ${meta.etag}`;
  throw new HubError(
    "corrupt",
    `${meta.path}: downloaded file does not match what the Hub reports (${what}); it was deleted, run again`,
  );
}

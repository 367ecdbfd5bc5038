/**
 * A model from the Hub as a local folder: resolves `org/name[@revision]` to a commit, fetches only the files a
 * model needs (config, tokenizer files, the safetensors weights or the shards its index names) into the shared
 * Hugging Face cache, and returns `snapshots/<commit>`, which loads like any model folder.
 *
 * @module
 */

import { join } from "node:path";
import { cachedCommit, exists, linkBlob, repoFolder, writeRef } from "./cache.ts";
import {
  downloadBlob,
  type DownloadProgress,
  type FetchContext,
  fileMeta,
  hubHeaders,
  statusError,
} from "./download.ts";
import { HubError } from "./errors.ts";
import { type HubId, parseHubId } from "./id.ts";
import { type HubSettings, hubSettingsFromEnv } from "./settings.ts";

/** Files fetched when the repository has them; `config.json` and the weights are required. */
export const MODEL_FILES = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
] as const;

const INDEX = "model.safetensors.index.json", SINGLE = "model.safetensors";

/** Options of {@link downloadModel}. */
export interface DownloadModelOptions {
  /** Endpoint, token, cache and offline mode; default {@link hubSettingsFromEnv}. */
  settings?: HubSettings;
  onProgress?: (p: DownloadProgress) => void;
  /** Non-fatal news, e.g. "no network, using the cached snapshot". */
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
  /** Extra attempts per file after an interrupted transfer (default 3). */
  retries?: number;
  /** For tests: the fetch to use. */
  fetch?: typeof fetch;
}

/** A model snapshot in the cache. */
export interface Snapshot {
  readonly id: HubId;
  readonly commit: string;
  /** `<cache>/models--org--name/snapshots/<commit>`. */
  readonly dir: string;
  /** Files fetched from the network by this call (empty on a cache hit). */
  readonly downloaded: readonly string[];
}

/**
 * Makes `id` (`org/name[@revision]`) available in the cache and returns its snapshot folder. Online, one API
 * call resolves the revision and lists the files; files already in the snapshot are not fetched again.
 * Offline (`HF_HUB_OFFLINE=1`), or when the Hub cannot be reached, the cached snapshot of the revision is used;
 * a {@link HubError} says what is missing and what to do.
 */
export async function downloadModel(
  id: string | HubId,
  options: DownloadModelOptions = {},
): Promise<Snapshot> {
  const hubId = typeof id === "string" ? parseHubId(id) : id;
  if (!hubId) {
    throw new HubError("not-found", `${JSON.stringify(id)} is not a Hub id (org/name or org/name@revision)`);
  }
  const settings = options.settings ?? hubSettingsFromEnv();
  const folder = repoFolder(settings.cacheDir, hubId.repo);
  const ctx: FetchContext = { settings, fetch: options.fetch, signal: options.signal };
  if (settings.offline) return await fromCache(hubId, folder, "HF_HUB_OFFLINE is set");
  let info: { sha: string; files: string[] };
  try {
    info = await repoInfo(ctx, hubId);
  } catch (e) {
    if (e instanceof HubError || options.signal?.aborted) throw e;
    const why = `${settings.endpoint} cannot be reached (${(e as Error).message})`;
    const snap = await fromCache(hubId, folder, why);
    options.onWarning?.(`${why}; using the cached snapshot ${snap.commit.slice(0, 12)} of ${label(hubId)}`);
    return snap;
  }
  await writeRef(folder, hubId.revision, info.sha);
  const dir = join(folder, "snapshots", info.sha);
  const downloaded: string[] = [];
  const fetchFile = async (path: string) => {
    if (await exists(join(dir, path))) return;
    const meta = await fileMeta(ctx, hubId.repo, info.sha, path);
    await downloadBlob(meta, join(folder, "blobs"), {
      ...ctx,
      onProgress: options.onProgress,
      retries: options.retries,
    });
    await linkBlob(folder, info.sha, path, meta.etag);
    downloaded.push(path);
  };
  for (const f of MODEL_FILES) if (info.files.includes(f)) await fetchFile(f);
  if (!info.files.includes("config.json")) {
    throw new HubError(
      "not-found",
      `${label(hubId)} has no config.json: it is not a transformers model repository`,
    );
  }
  for (const f of await weightFiles(dir, info.files, label(hubId), fetchFile)) await fetchFile(f);
  return { id: hubId, commit: info.sha, dir, downloaded };
}

const label = (id: HubId) => `${id.repo}@${id.revision}`;

/** The revision's commit and file list (`GET /api/models/<repo>/revision/<revision>`). */
async function repoInfo(ctx: FetchContext, id: HubId): Promise<{ sha: string; files: string[] }> {
  const url = `${ctx.settings.endpoint}/api/models/${id.repo}/revision/${encodeURIComponent(id.revision)}`;
  const res = await (ctx.fetch ?? fetch)(url, { headers: hubHeaders(ctx, url), signal: ctx.signal });
  if (!res.ok) {
    await res.body?.cancel();
    throw statusError(ctx, res, id.repo, label(id));
  }
  const body = await res.json() as { sha?: string; siblings?: { rfilename: string }[] };
  if (typeof body.sha !== "string" || !Array.isArray(body.siblings)) {
    throw new HubError("http", `${url}: the answer has no sha or siblings; is HF_ENDPOINT a Hub?`);
  }
  return { sha: body.sha, files: body.siblings.map((s) => s.rfilename) };
}

/** The safetensors files to fetch: the shards an index names, or the single file. */
async function weightFiles(
  dir: string,
  files: readonly string[],
  what: string,
  fetchFile: (path: string) => Promise<void>,
): Promise<string[]> {
  if (files.includes(INDEX)) {
    await fetchFile(INDEX);
    return await shardsOf(join(dir, INDEX));
  }
  if (files.includes(SINGLE)) return [SINGLE];
  const others = files.filter((f) => /\.(bin|pt|pth|gguf|onnx)$/.test(f)).slice(0, 3);
  throw new HubError(
    "not-found",
    `${what} has no ${SINGLE} or ${INDEX}${others.length ? ` (it has ${others.join(", ")})` : ""}: ` +
      "flexora reads safetensors weights only",
  );
}

async function shardsOf(index: string): Promise<string[]> {
  const json = JSON.parse(await Deno.readTextFile(index)) as { weight_map?: Record<string, string> };
  return [...new Set(Object.values(json.weight_map ?? {}))].sort();
}

/** The cached snapshot of `id`'s revision, when it holds a loadable model; else a HubError saying why not. */
async function fromCache(id: HubId, folder: string, why: string): Promise<Snapshot> {
  const commit = await cachedCommit(folder, id.revision);
  const dir = commit ? join(folder, "snapshots", commit) : "";
  const missing = !commit
    ? [`the revision '${id.revision}'`]
    : !(await exists(join(dir, "config.json")))
    ? ["config.json"]
    : (await exists(join(dir, INDEX)))
    ? (await Promise.all(
      (await shardsOf(join(dir, INDEX))).map(async (s) => (await exists(join(dir, s))) ? [] : [s]),
    ))
      .flat()
    : (await exists(join(dir, SINGLE)))
    ? []
    : [SINGLE];
  if (missing.length === 0) return { id, commit: commit!, dir, downloaded: [] };
  throw new HubError(
    "offline",
    `${why}, and the cache at ${folder} lacks ${missing.join(", ")} of ${label(id)}: ` +
      "connect to the network (and unset HF_HUB_OFFLINE) once to download it, or set HF_HUB_CACHE/HF_HOME to a " +
      "cache that has it",
  );
}

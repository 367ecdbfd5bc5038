/**
 * llama.cpp's server (`llama-server`). It cannot load an adapter file while running: adapters are GGUF files
 * given with `--lora FILE` at start (`--lora-init-without-apply` starts them at scale 0), and only their scales
 * change at run time, through `GET /lora-adapters` (`[{id, path, scale}]`) and `POST /lora-adapters`
 * (`[{id, scale}]`). Older servers set every adapter left out of that list to 0, so the plugin always posts the
 * whole list.
 *
 * - attach: finds the preloaded adapter of this name (file `<name>.gguf`, or `path` equal to the adapter's) and
 *   sets its scale to 1. An adapter that was not preloaded cannot be loaded (capability `load` is false): the
 *   plugin converts it to GGUF, `<name>.gguf` beside the adapter's folder (or in `options.ggufDir`), and throws an
 *   {@link UnsupportedError} with the llama-server command line that preloads it (`options.baseGguf`: the base
 *   model's GGUF file, for that command line). The conversion needs the base model's folder: `options.modelDir`,
 *   or the adapter's `base_model_name_or_path` (see `plugins/gguf.ts`).
 * - detach: sets its scale to 0.
 * - list: the adapters with a nonzero scale, named by their file name without `.gguf`.
 * - verify: scale nonzero, and greedy completions (`POST /completion`, 8 tokens) with the per-request
 *   `lora: [{id, scale: 1}]` and with `lora: []` (no adapter) differ.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { type AdapterFiles, checkName, inspectAdapter } from "../adapter.ts";
import { attaching, detaching, failingAs } from "../errors.ts";
import { baseModelDir, writeAdapterGguf } from "../gguf.ts";
import { isRecord, ServerClient, unexpectedAnswer } from "../http.ts";
import { stringOption } from "../options.ts";
import {
  type AdapterRef,
  AttachError,
  type CallContext,
  type ServerConfig,
  type ServerPlugin,
  UnsupportedError,
  type Verification,
} from "../types.ts";
import { attachResult, compareProbes, PROBE_TOKENS, type ProbeOutput, probePrompt } from "../verify.ts";

/** One adapter llama-server was started with. */
interface LoraEntry {
  readonly id: number;
  readonly path: string;
  readonly scale: number;
}

/** The name an entry is listed under: its file name without `.gguf`. */
export function entryName(entry: { readonly path: string }): string {
  return basename(entry.path).replace(/\.gguf$/i, "");
}

function matches(entry: LoraEntry, adapter: AdapterRef): boolean {
  return basename(entry.path) === `${adapter.name}.gguf` || entry.path === adapter.path;
}

async function entries(client: ServerClient): Promise<LoraEntry[]> {
  const body = await client.json("GET", "/lora-adapters");
  if (!Array.isArray(body)) throw unexpectedAnswer("GET /lora-adapters", body);
  return body.filter(isRecord).filter((e) => typeof e.id === "number" && typeof e.path === "string").map((
    e,
  ) => ({
    id: e.id as number,
    path: e.path as string,
    scale: typeof e.scale === "number" ? e.scale : 0,
  }));
}

/** Sets `id`'s scale, posting every adapter's scale (older servers reset the ones left out). */
async function setScale(
  client: ServerClient,
  all: readonly LoraEntry[],
  id: number,
  scale: number,
): Promise<void> {
  await client.send({
    path: "/lora-adapters",
    json: all.map((e) => ({ id: e.id, scale: e.id === id ? scale : e.scale })),
  });
}

async function complete(
  client: ServerClient,
  prompt: string,
  lora: readonly { id: number; scale: number }[],
): Promise<ProbeOutput> {
  const body = await client.json("POST", "/completion", {
    prompt,
    n_predict: PROBE_TOKENS,
    temperature: 0,
    n_probs: 1,
    lora,
  });
  if (!isRecord(body) || typeof body.content !== "string") throw unexpectedAnswer("POST /completion", body);
  const probs = Array.isArray(body.completion_probabilities) ? body.completion_probabilities : [];
  return {
    text: body.content,
    logprobs: probs.filter(isRecord).map((p) => p.logprob).filter((x): x is number => typeof x === "number"),
  };
}

/** The one preloaded entry of `adapter`, or null; two candidates are an error. */
function find(all: readonly LoraEntry[], adapter: AdapterRef, what: string): LoraEntry | null {
  const found = all.filter((e) => matches(e, adapter));
  if (found.length > 1) {
    throw new AttachError(
      `${what}: several preloaded adapters match: ${found.map((e) => e.path).join(", ")}`,
    );
  }
  return found[0] ?? null;
}

async function verifyWith(
  client: ServerClient,
  adapter: AdapterRef,
  ctx: CallContext,
  what: string,
): Promise<Verification> {
  const entry = find(await entries(client), adapter, what);
  if (!entry) {
    return { listed: false, changesOutput: false, detail: `no adapter '${adapter.name}' was preloaded` };
  }
  const listed = entry.scale !== 0;
  const where = `${entry.path} (id ${entry.id}) has scale ${entry.scale}`;
  if (!listed) return { listed, changesOutput: false, detail: where };
  const prompt = probePrompt(ctx);
  const { changesOutput, detail } = compareProbes(
    prompt,
    await complete(client, prompt, [{ id: entry.id, scale: 1 }]),
    await complete(client, prompt, []),
  );
  return { listed, changesOutput, detail: `${where}; ${detail}` };
}

/**
 * Where the plugin writes an adapter's GGUF: `<options.ggufDir>/<name>.gguf`, else `<name>.gguf` in the folder
 * that holds the adapter's folder (the sidecar keeps versions in `<data>/adapters/<name>/<version>`, so the file
 * keeps its path across versions and a restarted llama-server picks up the newest).
 *
 * @example
 * ```ts
 * import { ggufFile } from "./mod.ts";
 * const server = { name: "l", kind: "llamacpp" as const, url: "http://127.0.0.1:8080" };
 * if (ggufFile(server, { name: "sql", path: "/data/adapters/sql/job-1", rank: 8 }) !== "/data/adapters/sql/sql.gguf") {
 *   throw new Error("beside the version folders");
 * }
 * ```
 */
export function ggufFile(server: ServerConfig, adapter: AdapterRef): string {
  return join(stringOption(server, "ggufDir") ?? dirname(adapter.path), `${adapter.name}.gguf`);
}

/** The error for an adapter llama-server was not started with, after writing its GGUF where possible. */
async function notPreloaded(
  what: string,
  server: ServerConfig,
  adapter: AdapterRef,
  files: AdapterFiles,
  all: readonly LoraEntry[],
): Promise<UnsupportedError> {
  const preloaded = `Preloaded: ${all.length ? all.map((e) => e.path).join(", ") : "none"}`;
  const cannot = `${what}: llama.cpp cannot load adapters at run time`;
  const modelDir = await baseModelDir(server, files);
  if (modelDir === null) {
    return new UnsupportedError(
      `${cannot}, and flexora cannot convert the adapter to GGUF without its base model's folder: set ` +
        `options.modelDir, or run 'deno task flexora export-gguf --model BASE_DIR --adapter ${adapter.path} ` +
        `--out ${adapter.name}.gguf', start llama-server with --lora ${adapter.name}.gguf ` +
        `(--lora-init-without-apply starts it at scale 0) and attach again to set its scale. ${preloaded}`,
    );
  }
  const gguf = await writeAdapterGguf(what, adapter, modelDir, ggufFile(server, adapter));
  const base = stringOption(server, "baseGguf");
  const howBase = base
    ? ""
    : ` (BASE.gguf: 'deno task flexora export-gguf --model ${modelDir} --out BASE.gguf')`;
  return new UnsupportedError(
    `${cannot}; flexora wrote the adapter as GGUF to ${gguf.path}. Restart llama-server with it preloaded: ` +
      `llama-server -m ${base ?? "BASE.gguf"} --lora ${gguf.path} --lora-init-without-apply${howBase}, ` +
      `then attach again to set its scale. ${preloaded}`,
  );
}

/**
 * The llama.cpp plugin.
 *
 * @example
 * ```ts
 * import { llamacppPlugin } from "./mod.ts";
 * if (llamacppPlugin.capabilities({ name: "l", kind: "llamacpp", url: "" }).load) throw new Error("no loading");
 * ```
 */
export const llamacppPlugin: ServerPlugin = {
  kind: "llamacpp",
  capabilities: () => ({ load: false, unload: true, list: true, generate: true }),
  async attach(server, adapter, ctx) {
    const started = performance.now();
    const what = attaching(server, adapter.name);
    const files = await inspectAdapter(server, adapter);
    const client = new ServerClient(server, ctx);
    const all = await failingAs(what, () => entries(client));
    const entry = find(all, adapter, what);
    if (!entry) throw await notPreloaded(what, server, adapter, files, all);
    if (entry.scale !== 1) await failingAs(what, () => setScale(client, all, entry.id, 1));
    const v = await failingAs(what, () => verifyWith(client, adapter, ctx, what));
    return attachResult(server, adapter, v, client, started);
  },
  async detach(server, name, ctx) {
    const what = detaching(server, name);
    checkName(what, name);
    const client = new ServerClient(server, ctx);
    const all = await failingAs(what, () => entries(client));
    const entry = all.find((e) => basename(e.path) === `${name}.gguf`);
    if (!entry) throw new AttachError(`${what}: no preloaded adapter ${name}.gguf`, { status: 404 });
    if (entry.scale === 0) {
      throw new AttachError(`${what}: ${entry.path} is not attached (scale 0)`, { status: 404 });
    }
    await failingAs(what, () => setScale(client, all, entry.id, 0));
  },
  async list(server, ctx) {
    const all = await failingAs(
      `Cannot list the adapters of server '${server.name}'`,
      () => entries(new ServerClient(server, ctx)),
    );
    return all.filter((e) => e.scale !== 0).map(entryName).sort();
  },
  verify: (server: ServerConfig, adapter, ctx) => {
    const what = `Cannot verify '${adapter.name}' on server '${server.name}'`;
    return failingAs(what, () => verifyWith(new ServerClient(server, ctx), adapter, ctx, what));
  },
  reachable: (server, ctx) => new ServerClient(server, ctx).answers("/health"),
};

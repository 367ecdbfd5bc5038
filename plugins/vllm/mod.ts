/**
 * vLLM (and flexora's embedded server, which reproduces vLLM's routes).
 *
 * The runtime routes exist only when vLLM runs with `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=1`;
 * otherwise they answer FastAPI's 404 `{"detail":"Not Found"}`, reported as {@link RUNTIME_UPDATING_OFF}.
 *
 * - attach: `POST /v1/load_lora_adapter {lora_name, lora_path}` (a 200 with a plain-text body); a new version of a
 *   loaded name is loaded again with `load_inplace: true`, which replaces it without a moment where the name is
 *   missing (`api.ts`). vLLM re-reads an evicted adapter from its path, so the plugin never writes into
 *   `lora_path`: each version has its own folder.
 * - with `options.resolverDir` (vLLM's filesystem resolver): the folder is copied to `<resolverDir>/<name>/`
 *   instead and loads on first use by name (`resolver.ts`).
 * - detach: `POST /v1/unload_lora_adapter {lora_name}` (and, in resolver mode, the copy is removed).
 * - list: `GET /v1/models`, the cards with a `parent` (adapters: `id` = name, `root` = path, `parent` = base).
 * - verify: listed with the expected root, and a greedy probe (`POST /v1/completions`, 8 tokens, `logprobs: 1`)
 *   that differs from the base model's.
 *
 * A rank above `options.maxLoraRank` is refused before any request (`../adapter.ts`). Errors come in two
 * historical shapes, `{"error": {message, type, code}}` and `{"object": "error", message, type, code}`; both are
 * read by `serverMessage` (`../http.ts`).
 *
 * @module
 */

import { checkName, inspectAdapter } from "../adapter.ts";
import { attaching, detaching, failingAs } from "../errors.ts";
import { ServerClient, ServerError } from "../http.ts";
import { stringOption } from "../options.ts";
import type {
  AdapterRef,
  AttachResult,
  CallContext,
  ServerConfig,
  ServerPlugin,
  Verification,
} from "../types.ts";
import { attachResult, compareProbes, type ProbeOutput, probePrompt } from "../verify.ts";
import { complete } from "../openai.ts";
import { baseName, loadAdapter, models, RUNTIME_UPDATING_OFF, unloadAdapter } from "./api.ts";
import { installInResolverDir, removeFromResolverDir, resolverPath } from "./resolver.ts";

export { RUNTIME_UPDATING_OFF };

/** Listed under its name with the expected root, and a probe that differs from the base's. */
async function verifyWith(
  client: ServerClient,
  server: ServerConfig,
  name: string,
  root: string,
  ctx: CallContext,
): Promise<Verification> {
  const prompt = probePrompt(ctx);
  // The adapter's probe goes first: in resolver mode it is what loads the adapter.
  let adapterOut: ProbeOutput | null = null;
  try {
    adapterOut = await complete(client, name, prompt);
  } catch (e) {
    if (!(e instanceof ServerError && e.status === 404)) throw e;
  }
  const cards = await models(client);
  const card = cards.find((c) => c.id === name && c.parent !== null);
  const listed = card !== undefined && card.root === root;
  const where = card === undefined
    ? `GET /v1/models does not list '${name}'`
    : `GET /v1/models lists '${name}' with root ${card.root}${listed ? "" : `, not ${root}`}`;
  if (adapterOut === null) {
    return { listed, changesOutput: false, detail: `${where}; the server does not know the model '${name}'` };
  }
  const base = await complete(client, baseName(server, cards), prompt);
  const { changesOutput, detail } = compareProbes(prompt, adapterOut, base);
  return { listed, changesOutput, detail: `${where}; ${detail}` };
}

async function attach(server: ServerConfig, adapter: AdapterRef, ctx: CallContext): Promise<AttachResult> {
  const started = performance.now();
  const what = attaching(server, adapter.name);
  const files = await inspectAdapter(server, adapter);
  const client = new ServerClient(server, ctx);
  const resolverDir = stringOption(server, "resolverDir");
  let root = adapter.path;
  if (resolverDir) root = await installInResolverDir(server, adapter, files, resolverDir, client);
  else await failingAs(what, () => loadAdapter(client, adapter.name, adapter.path, what));
  const v = await failingAs(what, () => verifyWith(client, server, adapter.name, root, ctx));
  return attachResult(server, adapter, v, client, started);
}

async function detach(server: ServerConfig, name: string, ctx: CallContext): Promise<void> {
  const what = detaching(server, name);
  checkName(what, name);
  const resolverDir = stringOption(server, "resolverDir");
  // In resolver mode an adapter copied in but never used is not loaded: removing its copy is enough.
  const removed = resolverDir ? await removeFromResolverDir(server, name, resolverDir) : false;
  const client = new ServerClient(server, ctx);
  await failingAs(what, () => unloadAdapter(client, name, what, { missingOk: removed }));
}

async function list(server: ServerConfig, ctx: CallContext): Promise<string[]> {
  const cards = await failingAs(
    `Cannot list the adapters of server '${server.name}'`,
    () => models(new ServerClient(server, ctx)),
  );
  return cards.filter((c) => c.parent !== null).map((c) => c.id).sort();
}

async function verify(server: ServerConfig, adapter: AdapterRef, ctx: CallContext): Promise<Verification> {
  const resolverDir = stringOption(server, "resolverDir");
  const root = resolverDir ? resolverPath(resolverDir, adapter.name) : adapter.path;
  return await failingAs(
    `Cannot verify '${adapter.name}' on server '${server.name}'`,
    () => verifyWith(new ServerClient(server, ctx), server, adapter.name, root, ctx),
  );
}

/**
 * The plugin for a server with vLLM's routes, under `kind`.
 *
 * @example
 * ```ts
 * import { vllmLike } from "./mod.ts";
 * const plugin = vllmLike("embedded");
 * if (plugin.kind !== "embedded" || !plugin.capabilities({ name: "e", kind: "embedded", url: "" }).load) {
 *   throw new Error("vLLM's routes load adapters at run time");
 * }
 * ```
 */
export function vllmLike(kind: "vllm" | "embedded"): ServerPlugin {
  return {
    kind,
    capabilities: () => ({ load: true, unload: true, list: true, generate: true }),
    attach,
    detach,
    list,
    verify,
    reachable: (server, ctx) => new ServerClient(server, ctx).answers("/v1/models"),
  };
}

/** vLLM. */
export const vllmPlugin: ServerPlugin = vllmLike("vllm");

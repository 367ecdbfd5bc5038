/**
 * SGLang (started with `--enable-lora`; set `--max-lora-rank` and `--lora-target-modules` for adapters loaded at
 * run time).
 *
 * - attach: `POST /load_lora_adapter {lora_name, lora_path, pinned: false}` (no `/v1`), answered
 *   `{success, error_message, loaded_adapters}` with 200 or 400. A name that is already loaded is refused by
 *   SGLang, so a new version is swapped in by unloading the old one first (requests in that instant fail).
 * - detach: `POST /unload_lora_adapter {lora_name}`.
 * - list: an SGLang that has sgl-project/sglang#12229 lists loaded adapters in `GET /v1/models`, like vLLM (cards
 *   with a `parent`, `root` the path); its base card carries `parent: null`, which is how the plugin tells it from
 *   an older one. Older SGLang has no route that lists the adapters loaded at run time (`GET /v1/models` lists
 *   only the base model, `GET /get_server_info` only the `lora_paths` it was started with). For those the plugin
 *   remembers, per server URL, the `loaded_adapters` (name → path) of the last load or unload answer it saw; the
 *   candidates are those plus the startup `lora_paths`, and each is confirmed by a 1-token completion with
 *   `model: "<base>:<name>"` (SGLang refuses an adapter that is not loaded), so a restarted server never shows
 *   stale names. Adapters that someone else loaded are listed once this plugin has seen an answer naming them.
 *   Either way the list is the registry of the tokenizer worker that answered: with `--tokenizer-worker-num` above
 *   1 each worker has its own (sgl-project/sglang#31084), so run one.
 * - verify: listed with the same path, and a greedy probe through `POST /v1/completions` with
 *   `model: "<base>:<adapter>"` that differs from the base's.
 *
 * @module
 */

import { checkName, inspectAdapter } from "../adapter.ts";
import { attaching, detaching, failingAs } from "../errors.ts";
import { isRecord, ServerClient, ServerError, unexpectedAnswer } from "../http.ts";
import { complete } from "../openai.ts";
import type { AdapterRef, CallContext, ServerConfig, ServerPlugin, Verification } from "../types.ts";
import { attachResult, compareProbes, probePrompt } from "../verify.ts";

const LOAD = "POST /load_lora_adapter", UNLOAD = "POST /unload_lora_adapter";

/** Adapter name → path, as SGLang reports them. */
type Loaded = ReadonlyMap<string, string>;

/** `loaded_adapters` of a load or unload answer. */
function loadedOf(where: string, body: unknown): Loaded {
  const loaded = isRecord(body) ? body.loaded_adapters : undefined;
  if (!isRecord(loaded)) throw unexpectedAnswer(where, body);
  return new Map(Object.entries(loaded).map(([name, path]) => [name, String(path)]));
}

/** The adapters a server was started with: `lora_paths` in any of its spellings over SGLang's versions. */
function startupAdapters(info: unknown): Loaded {
  const paths = isRecord(info) ? info.lora_paths : undefined;
  const out = new Map<string, string>();
  if (isRecord(paths)) {
    for (const [name, path] of Object.entries(paths)) {
      out.set(name, isRecord(path) ? String(path.lora_path) : String(path));
    }
  } else if (Array.isArray(paths)) {
    for (const p of paths) {
      if (isRecord(p) && typeof p.lora_name === "string") out.set(p.lora_name, String(p.lora_path));
      else if (typeof p === "string") {
        const eq = p.indexOf("=");
        out.set(eq < 0 ? p : p.slice(0, eq), eq < 0 ? p : p.slice(eq + 1));
      }
    }
  }
  return out;
}

/** The base model's name: `server.baseModel`, else the one model `GET /v1/models` lists. */
async function baseName(client: ServerClient, server: ServerConfig): Promise<string> {
  if (server.baseModel) return server.baseModel;
  const body = await client.json("GET", "/v1/models");
  const first = isRecord(body) && Array.isArray(body.data) ? body.data[0] : undefined;
  if (!isRecord(first) || typeof first.id !== "string") throw unexpectedAnswer("GET /v1/models", body);
  return first.id;
}

/** True when SGLang accepts `<base>:<name>` in a completion, i.e. has the adapter loaded. */
async function serves(client: ServerClient, base: string, name: string): Promise<boolean> {
  try {
    await client.send({
      path: "/v1/completions",
      json: { model: `${base}:${name}`, prompt: "", max_tokens: 1 },
    });
    return true;
  } catch (e) {
    if (e instanceof ServerError && e.status !== undefined && e.status < 500) return false;
    throw e;
  }
}

/**
 * The SGLang plugin. It holds the adapters last seen loaded on each server (see the module doc), so make one per
 * sidecar.
 *
 * @example
 * ```ts
 * import { sglangPlugin } from "./mod.ts";
 * const plugin = sglangPlugin();
 * if (!plugin.capabilities({ name: "s", kind: "sglang", url: "" }).load) throw new Error("SGLang loads at run time");
 * ```
 */
export function sglangPlugin(): ServerPlugin {
  const seen = new Map<string, Loaded>(); // server URL → the last loaded_adapters seen

  /** Loads; a name SGLang already has is unloaded first (SGLang refuses to load over it). */
  const load = async (client: ServerClient, adapter: AdapterRef): Promise<void> => {
    const request = { lora_name: adapter.name, lora_path: adapter.path, pinned: false };
    const post = async () =>
      seen.set(client.server.url, loadedOf(LOAD, await client.json("POST", "/load_lora_adapter", request)));
    try {
      await post();
    } catch (e) {
      if (
        !(e instanceof ServerError && e.status === 400 && /already (exists|loaded)/i.test(e.serverMessage))
      ) {
        throw e;
      }
      await unload(client, adapter.name);
      await post();
    }
  };

  const unload = async (client: ServerClient, name: string): Promise<void> => {
    const body = await client.json("POST", "/unload_lora_adapter", { lora_name: name });
    seen.set(client.server.url, loadedOf(UNLOAD, body));
  };

  /** `GET /v1/models`' adapters (name → root) when the server lists them there (the base card has a `parent`). */
  const listedInModels = async (client: ServerClient): Promise<Loaded | null> => {
    const body = await client.json("GET", "/v1/models");
    const cards = isRecord(body) && Array.isArray(body.data) ? body.data.filter(isRecord) : [];
    if (!cards.some((c) => "parent" in c)) return null;
    return new Map(
      cards.filter((c) => typeof c.parent === "string" && typeof c.id === "string")
        .map((c) => [c.id as string, String(c.root)]),
    );
  };

  /** The server's own list, else the candidates (last answer seen + startup adapters), each confirmed. */
  const loaded = async (client: ServerClient): Promise<Loaded> => {
    const listed = await listedInModels(client);
    if (listed) {
      seen.set(client.server.url, listed);
      return listed;
    }
    const candidates = new Map([
      ...startupAdapters(await client.json("GET", "/get_server_info")),
      ...seen.get(client.server.url) ?? [],
    ]);
    const base = await baseName(client, client.server), confirmed = new Map<string, string>();
    for (const [name, path] of candidates) if (await serves(client, base, name)) confirmed.set(name, path);
    seen.set(client.server.url, confirmed);
    return confirmed;
  };

  /** Listed (in `known`, else the confirmed list) with the same path, and a probe that differs from the base's. */
  const verifyWith = async (
    client: ServerClient,
    adapter: AdapterRef,
    ctx: CallContext,
    known?: Loaded,
  ): Promise<Verification> => {
    const path = (known ?? await loaded(client)).get(adapter.name);
    const listed = path === adapter.path;
    const where = path === undefined
      ? `'${adapter.name}' is not among the loaded adapters`
      : `'${adapter.name}' is loaded from ${path}${listed ? "" : `, not ${adapter.path}`}`;
    if (path === undefined) return { listed, changesOutput: false, detail: where };
    const prompt = probePrompt(ctx), base = await baseName(client, client.server);
    const { changesOutput, detail } = compareProbes(
      prompt,
      await complete(client, `${base}:${adapter.name}`, prompt),
      await complete(client, base, prompt),
    );
    return { listed, changesOutput, detail: `${where}; ${detail}` };
  };

  return {
    kind: "sglang",
    capabilities: () => ({ load: true, unload: true, list: true, generate: true }),
    async attach(server, adapter, ctx) {
      const started = performance.now();
      const what = attaching(server, adapter.name);
      await inspectAdapter(server, adapter);
      const client = new ServerClient(server, ctx);
      await failingAs(what, () => load(client, adapter));
      // The load's own answer says what is loaded now.
      const v = await failingAs(what, () => verifyWith(client, adapter, ctx, seen.get(server.url)));
      return attachResult(server, adapter, v, client, started);
    },
    async detach(server, name, ctx) {
      checkName(detaching(server, name), name);
      await failingAs(detaching(server, name), () => unload(new ServerClient(server, ctx), name));
    },
    async list(server, ctx) {
      const names = await failingAs(
        `Cannot list the adapters of server '${server.name}'`,
        async () => [...(await loaded(new ServerClient(server, ctx))).keys()],
      );
      return names.sort();
    },
    verify: (server, adapter, ctx) =>
      failingAs(
        `Cannot verify '${adapter.name}' on server '${server.name}'`,
        () => verifyWith(new ServerClient(server, ctx), adapter, ctx),
      ),
    reachable: (server, ctx) => new ServerClient(server, ctx).answers("/get_model_info"),
  };
}

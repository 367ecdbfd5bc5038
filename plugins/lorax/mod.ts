/**
 * LoRAX. It has no load route: a request names its adapter (`POST /generate` with `parameters.adapter_id` and
 * `adapter_source`), which LoRAX loads on first use and caches by id. With `adapter_source: "local"` the id is a
 * folder on the server's disk, here `<options.adapterDir>/<name>`.
 *
 * - attach: checks that every target projection is in every layer (`padding.ts`; LoRAX drops the others), copies
 *   the adapter folder to `<adapterDir>/<name>` atomically, and verifies with a generation. Because LoRAX caches
 *   by id and has no route to evict an adapter, a different version under a name already in `adapterDir` is an
 *   {@link UnsupportedError} (attach it under a new name); the same files again are accepted.
 * - detach: removes the folder. LoRAX keeps an adapter it has already loaded until it evicts it or restarts, so
 *   reuse a detached name for different weights only after a restart.
 * - list: the adapter folders in `adapterDir`.
 * - verify: the folder is there, and greedy generations (`max_new_tokens` 8, `details: true`) with and without
 *   the adapter differ.
 *
 * Requests select the adapter with `{"adapter_id": "<adapterDir>/<name>", "adapter_source": "local"}`.
 *
 * @module
 */

import { join } from "node:path";
import { checkName, inspectAdapter } from "../adapter.ts";
import { attaching, detaching, failingAs } from "../errors.ts";
import { folderDigest, installCopy, listFolders, removeFolder } from "../files.ts";
import { isRecord, ServerClient, unexpectedAnswer } from "../http.ts";
import { requiredString } from "../options.ts";
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
import { checkPadded } from "./padding.ts";

function adapterDir(server: ServerConfig): string {
  return requiredString(
    server,
    "adapterDir",
    "the folder LoRAX reads local adapters from (adapter_source local)",
  );
}

/** The `adapter_id` requests use for `name`. */
export function adapterId(server: ServerConfig, name: string): string {
  return join(adapterDir(server), name);
}

async function generate(client: ServerClient, prompt: string, adapter: string | null): Promise<ProbeOutput> {
  const parameters = {
    max_new_tokens: PROBE_TOKENS,
    do_sample: false,
    details: true,
    ...(adapter === null ? {} : { adapter_id: adapter, adapter_source: "local" }),
  };
  const body = await client.json("POST", "/generate", { inputs: prompt, parameters });
  if (!isRecord(body) || typeof body.generated_text !== "string") {
    throw unexpectedAnswer("POST /generate", body);
  }
  const tokens = isRecord(body.details) && Array.isArray(body.details.tokens) ? body.details.tokens : [];
  return {
    text: body.generated_text,
    logprobs: tokens.filter(isRecord).map((t) => t.logprob).filter((x): x is number => typeof x === "number"),
  };
}

async function verifyWith(
  client: ServerClient,
  server: ServerConfig,
  name: string,
  ctx: CallContext,
): Promise<Verification> {
  const dir = adapterDir(server);
  const listed = (await listFolders(dir)).includes(name);
  if (!listed) return { listed, changesOutput: false, detail: `no adapter folder '${name}' in ${dir}` };
  const prompt = probePrompt(ctx);
  const { changesOutput, detail } = compareProbes(
    prompt,
    await generate(client, prompt, join(dir, name)),
    await generate(client, prompt, null),
  );
  return { listed, changesOutput, detail: `in ${dir}; ${detail}` };
}

/** Copies the adapter in unless the same files are there; a different version under the name is refused. */
async function install(server: ServerConfig, adapter: AdapterRef, what: string): Promise<boolean> {
  const dir = adapterDir(server);
  if ((await listFolders(dir)).includes(adapter.name)) {
    const [have, want] = await Promise.all([
      folderDigest(join(dir, adapter.name)),
      folderDigest(adapter.path),
    ]);
    if (have === want) return false;
    throw new UnsupportedError(
      `${what}: LoRAX caches adapters by id (here ${
        join(dir, adapter.name)
      }) and has no route to reload one, ` +
        `so a new version cannot replace '${adapter.name}': attach it under a new name`,
    );
  }
  await installCopy(adapter.path, dir, adapter.name, { replace: false });
  return true;
}

/**
 * The LoRAX plugin.
 *
 * @example
 * ```ts
 * import { loraxPlugin } from "./mod.ts";
 * if (!loraxPlugin.capabilities({ name: "l", kind: "lorax", url: "" }).generate) throw new Error("generates");
 * ```
 */
export const loraxPlugin: ServerPlugin = {
  kind: "lorax",
  capabilities: () => ({ load: true, unload: true, list: true, generate: true }),
  async attach(server, adapter, ctx) {
    const started = performance.now();
    const what = attaching(server, adapter.name);
    const files = await inspectAdapter(server, adapter);
    await checkPadded(server, files, what);
    const installed = await failingAs(what, () => install(server, adapter, what));
    const client = new ServerClient(server, ctx);
    try {
      const v = await failingAs(what, () => verifyWith(client, server, adapter.name, ctx));
      return attachResult(server, adapter, v, client, started);
    } catch (e) {
      // All or nothing: a copy that could not be verified is taken back.
      if (installed) await removeFolder(adapterDir(server), adapter.name).catch(() => {});
      throw e;
    }
  },
  async detach(server, name, ctx) {
    const what = detaching(server, name);
    checkName(what, name);
    ctx.signal?.throwIfAborted();
    const dir = adapterDir(server);
    if (!(await failingAs(what, () => removeFolder(dir, name)))) {
      throw new AttachError(`${what}: there is no adapter folder '${name}' in ${dir}`, { status: 404 });
    }
  },
  async list(server, ctx) {
    ctx.signal?.throwIfAborted();
    return await failingAs(
      `Cannot list the adapters of server '${server.name}'`,
      () => listFolders(adapterDir(server)),
    );
  },
  verify: (server, adapter, ctx) =>
    failingAs(
      `Cannot verify '${adapter.name}' on server '${server.name}'`,
      () => verifyWith(new ServerClient(server, ctx), server, adapter.name, ctx),
    ),
  reachable: (server, ctx) => new ServerClient(server, ctx).answers("/health"),
};

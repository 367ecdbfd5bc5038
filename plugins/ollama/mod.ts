/**
 * Ollama. An adapter becomes a new model, base + adapter, named `<namespace>/<name>` (namespace
 * `options.namespace`, default "flexora", which is also how `list` tells flexora's models from the others).
 *
 * - attach: asks `POST /api/show` for the base model's architecture. Ollama converts safetensors LoRA adapters
 *   only for llama and gemma2 models (and when it does not say): for those the plugin uploads
 *   `adapter_config.json` and `adapter_model.safetensors` as blobs (`POST /api/blobs/sha256:<digest>`, 201;
 *   Ollama's converter reads both). For any other base it converts the adapter to a GGUF LoRA adapter
 *   (`plugins/gguf.ts`; the base model's folder comes from `options.modelDir` or the adapter's
 *   `base_model_name_or_path`), checks that its architecture is the base's, and uploads that one file
 *   (`<name>.gguf`, written to a temporary folder, never into the adapter's). Then `POST /api/create
 *   {model, from, adapters: {file: "sha256:<digest>"}}`, whose answer streams NDJSON status lines ending with
 *   `{"status":"success"}` (or an `{"error"}` line). Attaching again replaces the model.
 * - The architecture is Ollama's own (`general.architecture` of the base it serves), not the adapter's
 *   `config.json`: Ollama serves Mistral models as "llama", for instance.
 * - detach: `DELETE /api/delete {model}`.
 * - list: `GET /api/tags`, the models `<namespace>/<name>:latest`.
 * - verify: listed, and `POST /api/generate` (greedy, 8 tokens, not streamed) differs from the base's.
 *
 * The base model is `options.baseModel`, else `baseModel`.
 *
 * @module
 */

import { type AdapterFiles, checkName, CONFIG_FILE, inspectAdapter, WEIGHTS_FILE } from "../adapter.ts";
import { attaching, detaching, failingAs } from "../errors.ts";
import { fileDigest } from "../files.ts";
import { baseModelDir, writeAdapterGguf } from "../gguf.ts";
import { isRecord, ServerClient, ServerError, unexpectedAnswer } from "../http.ts";
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
import { join } from "node:path";

/** Base architectures Ollama converts safetensors LoRA adapters for. */
export const SAFETENSORS_ARCHITECTURES: readonly string[] = ["llama", "gemma2"];

/** The Ollama model an adapter becomes: `<namespace>/<name>`. */
export function modelName(server: ServerConfig, name: string): string {
  return `${stringOption(server, "namespace") ?? "flexora"}/${name}`;
}

function baseModel(server: ServerConfig, what: string): string {
  const base = stringOption(server, "baseModel") ?? server.baseModel;
  if (!base) {
    throw new AttachError(`${what}: set 'options.baseModel', the Ollama model the adapter applies to`);
  }
  return base;
}

/** The base model's architecture as Ollama sees it, or null when `/api/show` does not say. */
async function architecture(client: ServerClient, base: string): Promise<string | null> {
  const body = await client.json("POST", "/api/show", { model: base });
  if (!isRecord(body)) throw unexpectedAnswer("POST /api/show", body);
  const arch = isRecord(body.model_info) ? body.model_info["general.architecture"] : undefined;
  const family = isRecord(body.details) ? body.details.family : undefined;
  return typeof arch === "string" ? arch : typeof family === "string" ? family : null;
}

/** Uploads a file as a blob; returns its digest, `sha256:<hex>`. */
async function uploadBlob(client: ServerClient, file: string): Promise<string> {
  const digest = `sha256:${await fileDigest(file)}`;
  await client.send({ path: `/api/blobs/${digest}`, body: async () => (await Deno.open(file)).readable });
  return digest;
}

/** `POST /api/create`, reading its NDJSON status lines to the end. */
async function create(client: ServerClient, model: string, from: string, adapters: Record<string, string>) {
  const { text } = await client.send({ path: "/api/create", json: { model, from, adapters } });
  const lines = text.split("\n").filter((l) => l.trim() !== "").map((l) => {
    try {
      return JSON.parse(l) as unknown;
    } catch {
      return l;
    }
  });
  const failed = lines.find((l) => isRecord(l) && typeof l.error === "string");
  if (isRecord(failed)) {
    throw new ServerError(`POST /api/create failed: ${failed.error}`, {
      serverMessage: String(failed.error),
      body: text,
      attempts: 1,
    });
  }
  const last = lines.at(-1);
  if (!isRecord(last) || last.status !== "success") throw unexpectedAnswer("POST /api/create", last ?? text);
}

async function generate(client: ServerClient, model: string, prompt: string): Promise<ProbeOutput> {
  const body = await client.json("POST", "/api/generate", {
    model,
    prompt,
    stream: false,
    options: { temperature: 0, num_predict: PROBE_TOKENS },
  });
  if (!isRecord(body) || typeof body.response !== "string") {
    throw unexpectedAnswer("POST /api/generate", body);
  }
  return { text: body.response, logprobs: [] };
}

/** Names (without namespace and `:latest`) of the namespace's models. */
async function tags(client: ServerClient): Promise<string[]> {
  const body = await client.json("GET", "/api/tags");
  const models = isRecord(body) ? body.models : undefined;
  if (!Array.isArray(models)) throw unexpectedAnswer("GET /api/tags", body);
  const prefix = modelName(client.server, "");
  return models.filter(isRecord).map((m) => String(m.name ?? m.model))
    .filter((n) => n.startsWith(prefix) && n.endsWith(":latest"))
    .map((n) => n.slice(prefix.length, -":latest".length)).sort();
}

async function verifyWith(client: ServerClient, adapter: AdapterRef, ctx: CallContext, what: string) {
  const model = modelName(client.server, adapter.name);
  const listed = (await tags(client)).includes(adapter.name);
  if (!listed) return { listed, changesOutput: false, detail: `GET /api/tags does not list ${model}` };
  const prompt = probePrompt(ctx);
  const { changesOutput, detail } = compareProbes(
    prompt,
    await generate(client, model, prompt),
    await generate(client, baseModel(client.server, what), prompt),
  );
  return { listed, changesOutput, detail: `GET /api/tags lists ${model}; ${detail}` } satisfies Verification;
}

/** What a GGUF attach needs. */
interface GgufAttach {
  readonly what: string;
  readonly server: ServerConfig;
  readonly adapter: AdapterRef;
  readonly files: AdapterFiles;
  readonly client: ServerClient;
  /** Ollama's base model and its architecture. */
  readonly base: string;
  readonly arch: string;
  /** The model to create. */
  readonly model: string;
}

/** Converts the adapter to GGUF in a temporary folder, checks its architecture, uploads it and creates the model. */
async function attachGguf(a: GgufAttach): Promise<void> {
  const modelDir = await baseModelDir(a.server, a.files);
  if (modelDir === null) {
    throw new UnsupportedError(
      `${a.what}: Ollama converts safetensors LoRA adapters only for ${
        SAFETENSORS_ARCHITECTURES.join(" and ")
      } ` +
        `models, and the base '${a.base}' is '${a.arch}'; flexora converts the adapter to GGUF for it, which needs ` +
        `the base model's folder: set options.modelDir`,
    );
  }
  const tmp = await Deno.makeTempDir({ prefix: "flexora-ollama-" });
  try {
    const gguf = await writeAdapterGguf(a.what, a.adapter, modelDir, join(tmp, `${a.adapter.name}.gguf`));
    if (gguf.architecture !== a.arch) {
      throw new AttachError(
        `${a.what}: the adapter was made for a '${gguf.architecture}' model (${modelDir}), but Ollama's base ` +
          `'${a.base}' is '${a.arch}'`,
      );
    }
    await failingAs(a.what, async () => {
      const digest = await uploadBlob(a.client, gguf.path);
      await create(a.client, a.model, a.base, { [`${a.adapter.name}.gguf`]: digest });
    });
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/**
 * The Ollama plugin.
 *
 * @example
 * ```ts
 * import { modelName, ollamaPlugin } from "./mod.ts";
 * const server = { name: "o", kind: "ollama" as const, url: "http://127.0.0.1:11434" };
 * if (ollamaPlugin.kind !== "ollama" || modelName(server, "sql") !== "flexora/sql") throw new Error();
 * ```
 */
export const ollamaPlugin: ServerPlugin = {
  kind: "ollama",
  capabilities: () => ({ load: true, unload: true, list: true, generate: true }),
  async attach(server, adapter, ctx) {
    const started = performance.now();
    const what = attaching(server, adapter.name);
    const files = await inspectAdapter(server, adapter);
    const base = baseModel(server, what);
    const client = new ServerClient(server, ctx);
    const arch = await failingAs(what, () => architecture(client, base));
    const model = modelName(server, adapter.name);
    if (arch === null || SAFETENSORS_ARCHITECTURES.includes(arch)) {
      await failingAs(what, async () => {
        const adapters: Record<string, string> = {};
        for (const file of [CONFIG_FILE, WEIGHTS_FILE]) {
          adapters[file] = await uploadBlob(client, join(adapter.path, file));
        }
        await create(client, model, base, adapters);
      });
    } else await attachGguf({ what, server, adapter, files, client, base, arch, model });
    const v = await failingAs(what, () => verifyWith(client, adapter, ctx, what));
    return attachResult(server, adapter, v, client, started);
  },
  async detach(server, name, ctx) {
    const what = detaching(server, name);
    checkName(what, name);
    const client = new ServerClient(server, ctx);
    await failingAs(
      what,
      () => client.send({ method: "DELETE", path: "/api/delete", json: { model: modelName(server, name) } }),
    );
  },
  list: (server, ctx) =>
    failingAs(
      `Cannot list the adapters of server '${server.name}'`,
      () => tags(new ServerClient(server, ctx)),
    ),
  verify: (server, adapter, ctx) => {
    const what = `Cannot verify '${adapter.name}' on server '${server.name}'`;
    return failingAs(what, () => verifyWith(new ServerClient(server, ctx), adapter, ctx, what));
  },
  reachable: (server, ctx) => new ServerClient(server, ctx).answers("/api/version"),
};

/**
 * The embedded inference server: an OpenAI-compatible Hono app on flexora's own engine, with vLLM's runtime LoRA
 * routes, so the sidecar can attach adapters to it exactly as to vLLM and the whole loop runs on one machine.
 *
 * | route                              | what                                                         |
 * | ---------------------------------- | ------------------------------------------------------------ |
 * | `POST /v1/completions`             | {@link ./completion_routes.ts}; prompts in {@link ./prompt.ts} |
 * | `POST /v1/chat/completions`        | the same, with the chat template (or the fallback template)  |
 * | `GET /v1/models`                   | {@link ./lora_routes.ts}                                     |
 * | `POST /v1/load_lora_adapter`       | vLLM's codes and bodies                                      |
 * | `POST /v1/unload_lora_adapter`     |                                                              |
 * | `GET /health`                      | 200, empty                                                   |
 *
 * Every error is `{"error": {"message", "type", "param", "code"}}` ({@link ./errors.ts}). Sampling defaults and
 * the fields a request may carry are in {@link ./params.ts}.
 *
 * **Concurrency.** Every onnxruntime run goes through one queue per server ({@link ./queue.ts}), a step at a time,
 * so concurrent requests interleave by token and no session ever runs twice at once. Sessions are shared per
 * adapter configuration ({@link ./sessions.ts}); a request captures the immutable adapter it started with, so
 * loading in place or unloading while it runs changes nothing for it ({@link ./registry.ts}).
 *
 * Nothing lives in module globals: everything hangs off the object {@link createEmbeddedApp} returns.
 *
 * @module
 */

import { basename } from "node:path";
import { Hono } from "hono";
import type { Model } from "../../model/model.ts";
import { completionRoutes } from "./completion_routes.ts";
import { Engine } from "./engine.ts";
import { ApiError, onError } from "./errors.ts";
import { loraRoutes } from "./lora_routes.ts";
import { SerialQueue } from "./queue.ts";
import { AdapterRegistry } from "./registry.ts";
import { SessionPool } from "./sessions.ts";
import { refusedHost } from "../security.ts";

/** Options of {@link createEmbeddedApp}. */
export interface EmbeddedOptions {
  /** The base model, from `loadModel`. */
  readonly model: Model;
  /** The name requests use for the base model (default: the base name of the model directory). */
  readonly servedName?: string;
  /** Largest LoRA rank accepted by `/v1/load_lora_adapter` (default 64, vLLM's `--max-lora-rank` maximum). */
  readonly maxLoraRank?: number;
  /** When given, adapters load only from inside these folders (symlinks resolved). */
  readonly allowedAdapterRoots?: readonly string[];
  /** onnxruntime intra-op threads per session (default: the number of cores). */
  readonly threads?: number;
  /** onnxruntime execution providers (default: the model's, see `loadModel`). */
  readonly providers?: string[];
  /**
   * When given, requests whose `Host` is none of these names (any port) get a 403, against DNS rebinding: the
   * server has no token, so a hostile page whose name resolves to 127.0.0.1 could otherwise use it. `flexora
   * serve` passes the loopback names.
   */
  readonly allowedHosts?: readonly string[];
}

/** A server: its Hono app, and `close`, which ends running requests and releases every session. */
export interface EmbeddedServer {
  readonly app: Hono;
  close(): Promise<void>;
}

/** Checks the options; messages name the option and the value. */
function validate(options: EmbeddedOptions): { servedName: string; maxLoraRank: number } {
  const servedName = options.servedName ?? basename(options.model.dir);
  if (typeof servedName !== "string" || servedName === "") {
    throw new Error(
      `Cannot start the embedded server: 'servedName' must be a non-empty string, got ${
        JSON.stringify(servedName)
      }`,
    );
  }
  const maxLoraRank = options.maxLoraRank ?? 64;
  if (!Number.isInteger(maxLoraRank) || maxLoraRank <= 0) {
    throw new Error(
      `Cannot start the embedded server: 'maxLoraRank' must be a positive integer, got ${maxLoraRank}`,
    );
  }
  const roots = options.allowedAdapterRoots;
  if (roots && !(Array.isArray(roots) && roots.every((r) => typeof r === "string" && r !== ""))) {
    throw new Error(
      `Cannot start the embedded server: 'allowedAdapterRoots' must be a list of folders, got ${
        JSON.stringify(roots)
      }`,
    );
  }
  return { servedName, maxLoraRank };
}

/**
 * Builds the server for a loaded model. Sessions are built on first use (the base model's on the first request
 * for it, an adapter's when it is loaded).
 *
 * @example
 * ```ts
 * import { loadModel } from "../../model/model.ts";
 * import { createEmbeddedApp } from "./app.ts";
 * const model = await loadModel(new URL("../../../fixtures/tiny-llama", import.meta.url).pathname);
 * const server = createEmbeddedApp({ model });
 * const res = await server.app.request("/v1/completions", {
 *   method: "POST",
 *   body: JSON.stringify({ model: "tiny-llama", prompt: "what color", max_tokens: 3, temperature: 0 }),
 * });
 * const body = await res.json();
 * if (body.usage.prompt_tokens !== 3) throw new Error(`BOS + 2 words, got ${JSON.stringify(body.usage)}`);
 * await server.close();
 * ```
 */
export function createEmbeddedApp(options: EmbeddedOptions): EmbeddedServer {
  const { servedName, maxLoraRank } = validate(options);
  const { model } = options;
  const registry = new AdapterRegistry(model.config, {
    maxLoraRank,
    allowedAdapterRoots: options.allowedAdapterRoots,
  });
  const pool = new SessionPool(model, (key) => registry.usesKey(key), {
    threads: options.threads,
    providers: options.providers,
  });
  const engine = new Engine(model, pool, new SerialQueue());

  const app = new Hono();
  const allowed = options.allowedHosts;
  if (allowed) {
    app.use(async (c, next) => {
      const host = refusedHost(c.req.url, allowed);
      if (host !== null) {
        throw new ApiError(
          403,
          `Host '${host}' is not a name this server answers to`,
          "PermissionDeniedError",
        );
      }
      await next();
    });
  }
  app.use(async (_c, next) => {
    if (engine.closed) throw new ApiError(503, "the server is shutting down", "ServiceUnavailableError");
    await next();
  });
  app.get("/health", (c) => c.body(null, 200));
  app.route("/", loraRoutes({ model, servedName, registry, pool }));
  app.route("/", completionRoutes({ model, servedName, registry, engine }));
  app.notFound((c) => c.json(ApiError.notFound(`no route for ${c.req.method} ${c.req.path}`).body(), 404));
  app.onError(onError);
  return { app, close: () => engine.close() };
}

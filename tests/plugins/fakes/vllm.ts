/**
 * A fake vLLM (and embedded server): `/v1/models`, `/v1/completions`, and, when runtime updating is on, the
 * LoRA load and unload routes with vLLM's answers: a plain-text 200; 400 for missing fields, a name already
 * loaded without `load_inplace`, or a rank above its `max_lora_rank`; 404 for no adapter at the path or an
 * unknown name to unload; 500 for DoRA; errors in either historical shape. Runtime updating off: those routes
 * answer FastAPI's 404 `{"detail":"Not Found"}`. An adapter marked NO_EFFECT loads with 200 and changes
 * nothing. With `resolverDir`, an unknown model name is looked up in that folder, as vLLM's filesystem resolver
 * does (peft_type LORA and the same base model).
 */

import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { join } from "node:path";
import {
  adapterConfig,
  adapterIdentity,
  BASE,
  type CommonOptions,
  type FakeServer,
  generated,
  serveFake,
} from "./common.ts";

/** Options of {@link startVllm}. */
export interface VllmOptions extends CommonOptions {
  readonly kind?: "vllm" | "embedded";
  /** `--enable-lora` with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=1` (default true). */
  readonly runtimeUpdating?: boolean;
  /** `{"error": {...}}` (default) or the older `{"object": "error", ...}`. */
  readonly errorShape?: "nested" | "flat";
  /** The server's own `--max-lora-rank` (default 16). */
  readonly maxLoraRank?: number;
  /** Knows `load_inplace` (vLLM since vllm-project/vllm#31326; default true); older ones ignore the field. */
  readonly loadInplace?: boolean;
  /** The served model (default "tiny-llama"). */
  readonly baseModel?: string;
  /** vLLM's `VLLM_LORA_RESOLVER_CACHE_DIR`, also passed to the plugin as `options.resolverDir`. */
  readonly resolverDir?: string;
  /** Further `options` of the returned configuration (such as `maxLoraRank`). */
  readonly options?: Record<string, unknown>;
}

/** A loaded adapter: where it came from and what it generates with. */
export interface LoadedLora {
  readonly path: string;
  readonly identity: string;
}

/** The fake, with what it has loaded and the JSON bodies of its load requests. */
export interface VllmFake extends FakeServer {
  readonly loaded: ReadonlyMap<string, LoadedLora>;
  readonly loadBodies: readonly Record<string, unknown>[];
}

/** Starts a fake vLLM on 127.0.0.1. */
export function startVllm(o: VllmOptions = {}): Promise<VllmFake> {
  const base = o.baseModel ?? "tiny-llama", maxRank = o.maxLoraRank ?? 16;
  const loaded = new Map<string, LoadedLora>(), loadBodies: Record<string, unknown>[] = [];
  const error = (message: string, type: string, status: ContentfulStatusCode) => {
    const body = { message, type, param: null, code: status };
    return Response.json(o.errorShape === "flat" ? { object: "error", ...body } : { error: body }, {
      status,
    });
  };
  const app = new Hono();
  app.notFound((c) => c.json({ detail: "Not Found" }, 404));
  app.get("/health", (c) => c.body(null, 200));
  app.get("/v1/models", (c) =>
    c.json({
      object: "list",
      data: [
        { id: base, object: "model", owned_by: "vllm", root: base, parent: null },
        ...[...loaded].map(([id, l]) => ({
          id,
          object: "model",
          owned_by: "vllm",
          root: l.path,
          parent: base,
        })),
      ],
    }));
  /** vLLM's filesystem resolver: `<resolverDir>/<name>` with peft_type LORA and our base model. */
  const resolve = async (name: string): Promise<LoadedLora | undefined> => {
    if (!o.resolverDir) return undefined;
    const path = join(o.resolverDir, name), config = await adapterConfig(path);
    if (config?.peft_type !== "LORA" || config.base_model_name_or_path !== base) return undefined;
    const lora = { path, identity: await adapterIdentity(path) };
    loaded.set(name, lora);
    return lora;
  };
  app.post("/v1/completions", async (c) => {
    const body = await c.req.json();
    const identity = body.model === base
      ? BASE
      : (loaded.get(body.model) ?? await resolve(body.model))?.identity;
    if (identity === undefined) {
      return error(`The model \`${body.model}\` does not exist.`, "NotFoundError", 404);
    }
    const out = generated(String(body.prompt), identity, body.max_tokens ?? 16);
    return c.json({
      id: "cmpl-fake",
      object: "text_completion",
      model: body.model,
      choices: [{
        index: 0,
        text: out.words.map((w) => ` ${w}`).join(""),
        logprobs: body.logprobs ? { tokens: out.words, token_logprobs: out.logprobs } : null,
        finish_reason: "length",
      }],
    });
  });
  if (o.runtimeUpdating ?? true) {
    app.post("/v1/load_lora_adapter", async (c) => {
      const body = await c.req.json();
      loadBodies.push(body);
      const { lora_name: name, lora_path: path } = body;
      if (!name || !path) {
        return error("Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput", 400);
      }
      if (loaded.has(name) && !(body.load_inplace && (o.loadInplace ?? true))) {
        return error(
          `The lora adapter '${name}' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.`,
          "InvalidUserInput",
          400,
        );
      }
      const config = await adapterConfig(path);
      if (!config) {
        return error(`Loading lora ${name} failed: No adapter found for ${path}`, "NotFoundError", 404);
      }
      if (config.use_dora) return error("vLLM does not yet support DoRA.", "InternalServerError", 500);
      if (Number(config.r) > maxRank) {
        return error(
          `LoRA rank ${config.r} is greater than max_lora_rank ${maxRank}.`,
          "BadRequestError",
          400,
        );
      }
      loaded.set(name, { path, identity: await adapterIdentity(path) });
      return c.text(`Success: LoRA adapter '${name}' added successfully.`);
    });
    app.post("/v1/unload_lora_adapter", async (c) => {
      const { lora_name: name } = await c.req.json();
      if (!name) {
        return error("'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput", 400);
      }
      if (!loaded.delete(name)) {
        return error(`The lora adapter '${name}' cannot be found.`, "NotFoundError", 404);
      }
      return c.text(`Success: LoRA adapter '${name}' removed successfully.`);
    });
  }
  const served = serveFake(app.fetch, {
    token: o.token,
    unauthorized: () => Response.json({ error: "Unauthorized" }, { status: 401 }),
  });
  const options = { ...(o.resolverDir ? { resolverDir: o.resolverDir } : {}), ...o.options };
  return Promise.resolve({
    server: {
      name: "fake-vllm",
      kind: o.kind ?? "vllm",
      url: served.url,
      token: o.token,
      baseModel: base,
      options,
    },
    requests: served.requests,
    failNext: served.failNext,
    close: served.close,
    serving: (name) => Promise.resolve(loaded.get(name)?.identity ?? null),
    loaded,
    loadBodies,
  });
}

/**
 * A fake SGLang: `POST /load_lora_adapter` and `/unload_lora_adapter` (no `/v1`) answering
 * `{success, error_message, loaded_adapters}` with 200 or 400 (a name already loaded, a missing folder, a rank
 * above its `--max-lora-rank`, an unknown name to unload), `GET /get_server_info` with the `lora_paths` it was
 * started with, `GET /v1/models` listing only the base model (or, with `listsAdapters`, as SGLang does since
 * sgl-project/sglang#12229: the base with `parent: null` and each loaded adapter), and `POST /v1/completions` where
 * `model: "<base>:<adapter>"` selects an adapter.
 */

import { Hono } from "hono";
import {
  adapterConfig,
  adapterIdentity,
  BASE,
  type CommonOptions,
  type FakeServer,
  generated,
  serveFake,
} from "./common.ts";
import type { AdapterRef } from "../../../plugins/types.ts";

/** Options of {@link startSglang}. */
export interface SglangOptions extends CommonOptions {
  /** Adapters given with `--lora-paths` at start. */
  readonly startup?: readonly AdapterRef[];
  /** `--max-lora-rank` (default 16). */
  readonly maxLoraRank?: number;
  /** List loaded adapters in `GET /v1/models` (SGLang with sgl-project/sglang#12229; default false). */
  readonly listsAdapters?: boolean;
}

/** The fake, with its loaded adapters (name → path and identity). */
export interface SglangFake extends FakeServer {
  readonly loaded: ReadonlyMap<string, { path: string; identity: string }>;
}

/** Starts a fake SGLang on 127.0.0.1. */
export async function startSglang(o: SglangOptions = {}): Promise<SglangFake> {
  const base = "tiny-llama", maxRank = o.maxLoraRank ?? 16;
  const loaded = new Map<string, { path: string; identity: string }>();
  for (const a of o.startup ?? []) {
    loaded.set(a.name, { path: a.path, identity: await adapterIdentity(a.path) });
  }
  const answer = (success: boolean, error_message = "") =>
    Response.json({
      rid: null,
      success,
      error_message,
      loaded_adapters: success ? Object.fromEntries([...loaded].map(([n, l]) => [n, l.path])) : null,
    }, { status: success ? 200 : 400 });
  const app = new Hono();
  app.get("/get_model_info", (c) => c.json({ model_path: base, is_generation: true }));
  app.get("/get_server_info", (c) =>
    c.json({
      model_path: base,
      enable_lora: true,
      max_lora_rank: maxRank,
      lora_paths: (o.startup ?? []).map((a) => ({ lora_name: a.name, lora_path: a.path, pinned: false })),
      version: "0.5.0",
    }));
  app.get("/v1/models", (c) => {
    if (!o.listsAdapters) {
      return c.json({ object: "list", data: [{ id: base, object: "model", root: base }] });
    }
    const adapters = [...loaded].map(([id, l]) => ({ id, object: "model", root: l.path, parent: base }));
    return c.json({
      object: "list",
      data: [{ id: base, object: "model", root: base, parent: null }, ...adapters],
    });
  });
  app.post("/load_lora_adapter", async (c) => {
    const { lora_name: name, lora_path: path } = await c.req.json();
    if (loaded.has(name)) {
      return answer(false, `Failed to load LoRA adapter ${name}: LoRA with name ${name} already exists.`);
    }
    const config = await adapterConfig(path);
    if (!config) {
      return answer(false, `Failed to load LoRA adapter ${name}: no adapter_config.json in ${path}`);
    }
    if (Number(config.r) > maxRank) {
      return answer(false, `LoRA adapter ${name} has rank ${config.r}, above --max-lora-rank ${maxRank}`);
    }
    loaded.set(name, { path, identity: await adapterIdentity(path) });
    return answer(true);
  });
  app.post("/unload_lora_adapter", async (c) => {
    const { lora_name: name } = await c.req.json();
    if (!loaded.delete(name)) return answer(false, `LoRA adapter ${name} is not loaded`);
    return answer(true);
  });
  app.post("/v1/completions", async (c) => {
    const body = await c.req.json();
    const model = String(body.model), colon = model.indexOf(":");
    const adapter = colon < 0 ? null : model.slice(colon + 1);
    const identity = adapter === null ? BASE : loaded.get(adapter)?.identity;
    if (identity === undefined) {
      return c.json({
        object: "error",
        message: `LoRA adapter ${adapter} is not loaded`,
        type: "BadRequest",
        param: null,
        code: 400,
      }, 400);
    }
    const out = generated(String(body.prompt), identity, body.max_tokens ?? 16);
    return c.json({
      id: "fake",
      object: "text_completion",
      model,
      choices: [{
        index: 0,
        text: out.words.map((w) => ` ${w}`).join(""),
        logprobs: body.logprobs ? { tokens: out.words, token_logprobs: out.logprobs } : null,
        finish_reason: "length",
      }],
    });
  });
  const served = serveFake(app.fetch, {
    token: o.token,
    unauthorized: () => Response.json({ error: "Unauthorized" }, { status: 401 }),
  });
  return {
    server: { name: "fake-sglang", kind: "sglang", url: served.url, token: o.token, baseModel: base },
    requests: served.requests,
    failNext: served.failNext,
    close: served.close,
    serving: (name) => Promise.resolve(loaded.get(name)?.identity ?? null),
    loaded,
  };
}

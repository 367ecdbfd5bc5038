/**
 * A fake Ollama: blobs (`POST /api/blobs/sha256:<digest>`, 201, refused when the bytes do not hash to the
 * digest), `POST /api/create` from a base model plus adapter blobs (streamed NDJSON status lines ending with
 * `{"status":"success"}`, or an `{"error"}` line: "unsupported architecture" for safetensors adapters on a base
 * other than llama or gemma2, a missing `adapter_config.json`), GGUF adapters (a `*.gguf` file, read with
 * `@huggingface/gguf`; the fake refuses one whose `general.type` is not "adapter" or whose architecture is not
 * the base's, which real Ollama would only fail on when it loads the model), `DELETE /api/delete`, `GET /api/tags`, `POST /api/show`,
 * `POST /api/generate` and `GET /api/version`. Names without a tag mean `:latest`. Errors are `{"error": "..."}`.
 */

import { gguf } from "@huggingface/gguf";
import { Hono } from "hono";
import { createHash } from "node:crypto";
import { BASE, type CommonOptions, type FakeServer, generated, serveFake } from "./common.ts";

/** Options of {@link startOllama}. */
export interface OllamaOptions extends CommonOptions {
  /** The base model's architecture as Ollama reports it (default "llama"). */
  readonly baseArchitecture?: string;
  /** `/api/show` reports the architecture (default true; older servers did not always). */
  readonly showArchitecture?: boolean;
}

/** A model made by `/api/create`. */
export interface CreatedModel {
  readonly from: string;
  readonly adapters: Readonly<Record<string, string>>;
  readonly identity: string;
}

/** The fake, with its blobs (digest → bytes) and created models (full name → model). */
export interface OllamaFake extends FakeServer {
  readonly blobs: ReadonlyMap<string, Uint8Array>;
  readonly created: ReadonlyMap<string, CreatedModel>;
}

const full = (name: string) => name.includes(":") ? name : `${name}:latest`;

/** The metadata of a GGUF blob, parsed by `@huggingface/gguf` (which reads files, so through a temporary one). */
async function ggufMetadata(bytes: Uint8Array): Promise<Record<string, unknown>> {
  const file = await Deno.makeTempFile({ suffix: ".gguf" });
  try {
    await Deno.writeFile(file, bytes);
    return (await gguf(file, { allowLocalFile: true })).metadata as Record<string, unknown>;
  } finally {
    await Deno.remove(file);
  }
}

/** Starts a fake Ollama on 127.0.0.1 serving the base model "tiny-llama". */
export function startOllama(o: OllamaOptions = {}): Promise<OllamaFake> {
  const base = "tiny-llama:latest", arch = o.baseArchitecture ?? "llama";
  const blobs = new Map<string, Uint8Array>(), created = new Map<string, CreatedModel>();
  const missing = (name: string) => Response.json({ error: `model '${name}' not found` }, { status: 404 });
  const app = new Hono();
  app.get("/api/version", (c) => c.json({ version: "0.12.6" }));
  app.on("HEAD", "/api/blobs/:digest", (c) => c.body(null, blobs.has(c.req.param("digest")) ? 200 : 404));
  app.post("/api/blobs/:digest", async (c) => {
    const digest = c.req.param("digest");
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    const actual = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    if (actual !== digest) {
      return c.json({ error: `digest mismatch, expected "${digest}", got "${actual}"` }, 400);
    }
    blobs.set(digest, bytes);
    return c.body(null, 201);
  });
  app.post("/api/create", async (c) => {
    const { model, from, adapters = {}, stream = true } = await c.req.json();
    if (full(String(from)) !== base) return missing(String(from));
    for (const digest of Object.values(adapters) as string[]) {
      if (!blobs.has(digest)) return c.json({ error: `blob ${digest} not found` }, 400);
    }
    const lines: unknown[] = [{ status: "converting adapter" }];
    const ggufFile = Object.keys(adapters).find((f) => f.endsWith(".gguf"));
    if (ggufFile) {
      const bytes = blobs.get(adapters[ggufFile])!;
      const kv = await ggufMetadata(bytes);
      if (kv["general.type"] !== "adapter") lines.push({ error: `${ggufFile} is not an adapter` });
      else if (kv["general.architecture"] !== arch) {
        lines.push({
          error: `adapter architecture ${kv["general.architecture"]} does not match the base's ${arch}`,
        });
      } else {
        const identity = createHash("sha256").update(bytes).digest("hex");
        created.set(full(model), { from, adapters, identity });
        lines.push({ status: "creating adapter layer" }, { status: "writing manifest" }, {
          status: "success",
        });
      }
    } else if (arch !== "llama" && arch !== "gemma2") lines.push({ error: "unsupported architecture" });
    else if (!adapters["adapter_config.json"]) {
      lines.push({ error: "open adapter_config.json: file does not exist" });
    } else {
      const weights = blobs.get(adapters["adapter_model.safetensors"]) ?? new Uint8Array();
      const identity = createHash("sha256").update(weights).digest("hex");
      created.set(full(model), { from, adapters, identity });
      lines.push({ status: "creating adapter layer" }, { status: "writing manifest" }, { status: "success" });
    }
    if (!stream) return c.json(lines.at(-1));
    return c.body(lines.map((l) => JSON.stringify(l) + "\n").join(""), 200, {
      "content-type": "application/x-ndjson",
    });
  });
  app.delete("/api/delete", async (c) => {
    const { model } = await c.req.json();
    return created.delete(full(model)) ? c.body(null, 200) : missing(model);
  });
  app.get("/api/tags", (c) =>
    c.json({
      models: [base, ...created.keys()].map((name) => ({
        name,
        model: name,
        size: 1,
        digest: "0",
        details: {},
      })),
    }));
  app.post("/api/show", async (c) => {
    const { model } = await c.req.json();
    if (full(model) !== base && !created.has(full(model))) return missing(model);
    if (o.showArchitecture === false) return c.json({ details: { format: "gguf" }, model_info: {} });
    return c.json({
      details: { family: arch, format: "gguf" },
      model_info: { "general.architecture": arch },
    });
  });
  app.post("/api/generate", async (c) => {
    const { model, prompt, options = {} } = await c.req.json();
    const identity = full(model) === base ? BASE : created.get(full(model))?.identity;
    if (identity === undefined) {
      return c.json({ error: `model '${model}' not found, try pulling it first` }, 404);
    }
    const out = generated(String(prompt), identity, options.num_predict ?? 16);
    return c.json({
      model,
      response: out.words.map((w) => ` ${w}`).join(""),
      done: true,
      done_reason: "length",
    });
  });
  const served = serveFake(app.fetch, {
    token: o.token,
    unauthorized: () => Response.json({ error: "unauthorized" }, { status: 401 }),
  });
  return Promise.resolve({
    server: {
      name: "fake-ollama",
      kind: "ollama",
      url: served.url,
      token: o.token,
      options: { baseModel: "tiny-llama" },
    },
    requests: served.requests,
    failNext: served.failNext,
    close: served.close,
    serving: (name) => Promise.resolve(created.get(full(`flexora/${name}`))?.identity ?? null),
    blobs,
    created,
  });
}

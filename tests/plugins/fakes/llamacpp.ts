/**
 * A fake llama.cpp server (`llama-server --lora A.gguf --lora B.gguf --lora-init-without-apply`): the adapters it
 * was started with at scale 0, `GET /lora-adapters` and `POST /lora-adapters` with the older servers' semantics
 * (every adapter left out of the posted list goes back to 0; an unknown id is a 500), and `POST /completion`
 * with the per-request `lora` list. Errors are `{"error": {code, message, type}}`.
 */

import { Hono } from "hono";
import { BASE, type CommonOptions, type FakeServer, generated, serveFake } from "./common.ts";

/** Options of {@link startLlamacpp}. */
export interface LlamacppOptions extends CommonOptions {
  /** GGUF paths given with `--lora`, in order (ids 0, 1, …). */
  readonly loras?: readonly string[];
}

/** The fake, with the adapters' current scales and the bodies posted to `/lora-adapters`. */
export interface LlamacppFake extends FakeServer {
  readonly scales: readonly number[];
  readonly posted: readonly unknown[];
}

/** Where the fake pretends `--lora` files are: `/models/lora/<name>.gguf`. */
export function ggufPath(name: string): string {
  return `/models/lora/${name}.gguf`;
}

/** Starts a fake llama-server on 127.0.0.1. */
export function startLlamacpp(o: LlamacppOptions = {}): Promise<LlamacppFake> {
  const paths = [...o.loras ?? []], scales = paths.map(() => 0), posted: unknown[] = [];
  const error = (code: 400 | 500, message: string, type: string) =>
    Response.json({ error: { code, message, type } }, { status: code });
  /** llama.cpp's parse_lora_request: every scale 0, then the listed ones. */
  const parse = (list: unknown): number[] | Response => {
    if (!Array.isArray(list)) return error(400, "Request body must be an array", "invalid_request_error");
    const next = paths.map(() => 0);
    for (const entry of list) {
      const id = Number(entry?.id ?? -1);
      if (!(id >= 0 && id < paths.length)) return error(500, "invalid adapter id", "server_error");
      next[id] = Number(entry?.scale ?? 0);
    }
    return next;
  };
  /** What generates with these scales: the base when all are 0. */
  const identity = (s: readonly number[]) => {
    const active = paths.map((p, i) => [p, s[i]] as const).filter(([, scale]) => scale !== 0);
    return active.length === 0 ? BASE : active.map(([p, scale]) => `${p}@${scale}`).join("+");
  };
  const app = new Hono();
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/lora-adapters", (c) => c.json(paths.map((path, id) => ({ id, path, scale: scales[id] }))));
  app.post("/lora-adapters", async (c) => {
    const body = await c.req.json();
    posted.push(body);
    const next = parse(body);
    if (next instanceof Response) return next;
    scales.splice(0, scales.length, ...next);
    return c.json({ success: true });
  });
  app.post("/completion", async (c) => {
    const body = await c.req.json();
    const s = body.lora === undefined ? scales : parse(body.lora);
    if (s instanceof Response) return s;
    const out = generated(String(body.prompt), identity(s), body.n_predict ?? 16);
    return c.json({
      content: out.words.map((w) => ` ${w}`).join(""),
      completion_probabilities: body.n_probs
        ? out.words.map((w, i) => ({ id: i, token: ` ${w}`, logprob: out.logprobs[i], top_logprobs: [] }))
        : undefined,
      stop: true,
    });
  });
  const served = serveFake(app.fetch, {
    token: o.token,
    unauthorized: () => error(401 as 400, "Invalid API Key", "authentication_error"),
  });
  return Promise.resolve({
    server: { name: "fake-llamacpp", kind: "llamacpp", url: served.url, token: o.token },
    requests: served.requests,
    failNext: served.failNext,
    close: served.close,
    serving(name) {
      const id = paths.indexOf(ggufPath(name));
      return Promise.resolve(id >= 0 && scales[id] !== 0 ? `${paths[id]}@${scales[id]}` : null);
    },
    scales,
    posted,
  });
}

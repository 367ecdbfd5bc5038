/**
 * HTTP calls to inference servers: JSON or text, a bearer token when the server has one, bounded exponential
 * backoff on connection errors and 5xx (never on 4xx), and an {@link AbortSignal} that stops both the request and
 * the wait between attempts. A failure is a {@link ServerError} carrying the server's status and message.
 *
 * One {@link ServerClient} serves one plugin call (an attach, a list, …) and counts the attempts made across all
 * of its requests, so an attach can report them.
 *
 * @module
 */

import type { CallContext, ServerConfig } from "./types.ts";

/** Retries when {@link CallContext.retries} is not given. */
export const DEFAULT_RETRIES = 4;
/** First backoff in milliseconds when {@link CallContext.backoffMs} is not given; it doubles after each retry. */
export const DEFAULT_BACKOFF_MS = 200;
/** Longest single wait between attempts, whatever the doubling reaches. */
export const MAX_BACKOFF_MS = 30_000;

/** A request that failed for good: the server's answer (or the connection error) and where it came from. */
export class ServerError extends Error {
  override name = "ServerError";
  /** HTTP status; undefined when no answer came (connection refused, reset, DNS). */
  readonly status?: number;
  /** The server's own message, parsed from its error body (see {@link serverMessage}). */
  readonly serverMessage: string;
  /** The raw response body ("" for a connection error). */
  readonly body: string;
  /** Attempts made for this request. */
  readonly attempts: number;
  constructor(
    message: string,
    init: { status?: number; serverMessage: string; body?: string; attempts: number; cause?: unknown },
  ) {
    super(message, { cause: init.cause });
    this.status = init.status;
    this.serverMessage = init.serverMessage;
    this.body = init.body ?? "";
    this.attempts = init.attempts;
  }
}

/** A successful (2xx) answer. */
export interface Reply {
  readonly status: number;
  readonly text: string;
}

/** A request: method, path below the server's URL, and a JSON value, a text, or a body made fresh per attempt. */
export interface HttpRequest {
  readonly method?: "GET" | "POST" | "DELETE" | "HEAD";
  readonly path: string;
  readonly json?: unknown;
  /** Called once per attempt, so a stream (a file being uploaded) is reopened for a retry. */
  readonly body?: () => BodyInit | Promise<BodyInit>;
  readonly contentType?: string;
  /** Answer at once, whatever happens (for reachability checks). */
  readonly once?: boolean;
  /** Give up after this many milliseconds per attempt. */
  readonly timeoutMs?: number;
}

/**
 * The message inside an error body, whichever shape the server uses: OpenAI's `{"error": {"message"}}`, vLLM's
 * older `{"object": "error", "message"}`, Ollama's and TGI's `{"error": "..."}`, FastAPI's `{"detail": ...}`,
 * SGLang's `{"error_message"}`; otherwise the text itself, shortened.
 *
 * @example
 * ```ts
 * import { serverMessage } from "./http.ts";
 * const nested = JSON.stringify({ error: { message: "rank too high", type: "BadRequestError", code: 400 } });
 * const flat = JSON.stringify({ object: "error", message: "rank too high", type: "BadRequestError", code: 400 });
 * if (serverMessage(nested) !== "rank too high" || serverMessage(flat) !== "rank too high") throw new Error();
 * ```
 */
export function serverMessage(text: string): string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return shorten(text.trim());
  }
  if (typeof json !== "object" || json === null) return shorten(text.trim());
  const o = json as Record<string, unknown>;
  const error = o.error;
  if (typeof error === "string") return error;
  if (isRecord(error) && typeof error.message === "string") return error.message;
  if (typeof o.message === "string") return o.message;
  if (typeof o.error_message === "string" && o.error_message !== "") return o.error_message;
  if (typeof o.detail === "string") return o.detail;
  if (Array.isArray(o.detail)) {
    return o.detail.map((d) => isRecord(d) && typeof d.msg === "string" ? d.msg : JSON.stringify(d)).join(
      "; ",
    );
  }
  return shorten(text.trim());
}

/** True for a JSON object (not null, not an array). */
export function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** A 2xx answer whose body does not have the shape the route documents. */
export function unexpectedAnswer(where: string, body: unknown): ServerError {
  const shown = shorten(JSON.stringify(body) ?? String(body));
  return new ServerError(`${where} answered with an unexpected body: ${shown}`, {
    serverMessage: shown,
    attempts: 1,
  });
}

function shorten(s: string): string {
  return s.length > 500 ? `${s.slice(0, 500)}…` : s;
}

/** Waits `ms`, or rejects with the signal's reason as soon as it fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Requests to one server within one plugin call.
 *
 * @example
 * ```ts
 * import { ServerClient } from "./http.ts";
 * const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => Response.json({ ok: true }));
 * const client = new ServerClient(
 *   { name: "local", kind: "vllm", url: `http://127.0.0.1:${server.addr.port}` },
 *   { fetch },
 * );
 * const answer = await client.json("GET", "/health");
 * await server.shutdown();
 * if ((answer as { ok: boolean }).ok !== true || client.attempts !== 1) throw new Error("one attempt");
 * ```
 */
export class ServerClient {
  #retried = 0;
  readonly server: ServerConfig;
  readonly ctx: CallContext;

  constructor(server: ServerConfig, ctx: CallContext) {
    this.server = server;
    this.ctx = ctx;
  }

  /** 1 + every retry made so far by this client's requests. */
  get attempts(): number {
    return 1 + this.#retried;
  }

  /** The request's answer when 2xx; otherwise throws {@link ServerError} (after retries for 5xx and no answer). */
  async send(req: HttpRequest): Promise<Reply> {
    const retries = req.once ? 0 : Math.max(0, Math.floor(this.ctx.retries ?? DEFAULT_RETRIES));
    const backoff = Math.max(0, this.ctx.backoffMs ?? DEFAULT_BACKOFF_MS);
    const method = req.method ?? (req.json === undefined && req.body === undefined ? "GET" : "POST");
    const where = `${method} ${req.path}`;
    const url = this.server.url.replace(/\/+$/, "") + req.path;
    for (let attempt = 1;; attempt++) {
      const init = await this.#init(method, req); // outside the try: a local failure is not the server's
      let failure: ServerError;
      try {
        const res = await this.ctx.fetch(url, init);
        const text = await res.text();
        if (res.ok) return { status: res.status, text };
        const message = serverMessage(text) || res.statusText;
        failure = new ServerError(`${where} answered ${res.status}: ${message}`, {
          status: res.status,
          serverMessage: message,
          body: text,
          attempts: attempt,
        });
        if (res.status < 500) throw failure;
      } catch (e) {
        if (this.ctx.signal?.aborted) throw this.ctx.signal.reason;
        if (e instanceof ServerError) throw e;
        const reason = e instanceof Error ? e.message : String(e);
        failure = new ServerError(`${where} to ${this.server.url} failed: ${reason}`, {
          serverMessage: reason,
          attempts: attempt,
          cause: e,
        });
      } finally {
        // A stream that fetch never took (connection refused, abort) would hold its file open.
        if (init.body instanceof ReadableStream && !init.body.locked) {
          await init.body.cancel().catch(() => {});
        }
      }
      if (attempt > retries) {
        const tries = attempt === 1 ? "1 attempt" : `${attempt} attempts`;
        throw new ServerError(`${failure.message} (${tries})`, {
          status: failure.status,
          serverMessage: failure.serverMessage,
          body: failure.body,
          attempts: attempt,
          cause: failure.cause,
        });
      }
      this.#retried++;
      await sleep(Math.min(MAX_BACKOFF_MS, backoff * 2 ** (attempt - 1)), this.ctx.signal);
    }
  }

  /**
   * True when the server answers `GET path` at all, whatever the status (one attempt, at most `timeoutMs`);
   * false when no answer came.
   */
  async answers(path: string, timeoutMs = 5000): Promise<boolean> {
    try {
      await this.send({ method: "GET", path, once: true, timeoutMs });
      return true;
    } catch (e) {
      if (this.ctx.signal?.aborted) throw this.ctx.signal.reason;
      if (e instanceof ServerError) return e.status !== undefined;
      throw e;
    }
  }

  /** {@link send}, then the body parsed as JSON (a body that is not JSON is a {@link ServerError}). */
  async json(method: "GET" | "POST" | "DELETE", path: string, json?: unknown): Promise<unknown> {
    const reply = await this.send({ method, path, json });
    try {
      return JSON.parse(reply.text);
    } catch {
      throw new ServerError(`${method} ${path} answered ${reply.status} with a body that is not JSON`, {
        status: reply.status,
        serverMessage: serverMessage(reply.text),
        body: reply.text,
        attempts: 1,
      });
    }
  }

  /** Headers, body (made afresh: a stream is read once) and signal of one attempt. */
  async #init(method: string, req: HttpRequest): Promise<RequestInit> {
    const headers = new Headers();
    if (this.server.token) headers.set("authorization", `Bearer ${this.server.token}`);
    let body: BodyInit | undefined;
    if (req.json !== undefined) {
      headers.set("content-type", "application/json");
      body = JSON.stringify(req.json);
    } else if (req.body) {
      headers.set("content-type", req.contentType ?? "application/octet-stream");
      body = await req.body();
    }
    const signals = [this.ctx.signal, req.timeoutMs ? AbortSignal.timeout(req.timeoutMs) : undefined]
      .filter((s): s is AbortSignal => s !== undefined);
    return { method, headers, body, signal: signals.length ? AbortSignal.any(signals) : undefined };
  }
}

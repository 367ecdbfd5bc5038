/**
 * What every fake server shares: serving on 127.0.0.1, a request log, fault injection (500 for the next N
 * requests), bearer-token checks, a URL where nothing listens, and deterministic "generation": text and
 * log-probabilities that depend only on (prompt, what is generating), so a probe tells adapter from base.
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import type { ServerConfig } from "../../../plugins/types.ts";

/** A running fake and its knobs. */
export interface FakeServer {
  /** A configuration that points at the fake. */
  readonly server: ServerConfig;
  /** Every request received, as "METHOD /path", in order (including failed and refused ones). */
  readonly requests: readonly string[];
  /** Answers the next `n` requests with 500, whatever they ask. */
  failNext(n: number): void;
  /** The identity (see {@link adapterIdentity}) the fake generates with for `name`, or null when it serves none. */
  serving(name: string): Promise<string | null>;
  close(): Promise<void>;
}

/** Options every fake takes. */
export interface CommonOptions {
  /** Bearer token the fake requires (none when absent). */
  readonly token?: string;
}

/** Serves `handler` behind the request log, fault injection and the token check; `unauthorized` answers a bad token. */
export function serveFake(
  handler: (req: Request) => Response | Promise<Response>,
  options: { token?: string; unauthorized: () => Response },
): { url: string; requests: string[]; failNext(n: number): void; close(): Promise<void> } {
  const requests: string[] = [];
  let failing = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    requests.push(`${req.method} ${new URL(req.url).pathname}`);
    if (failing > 0) {
      failing--;
      await req.body?.cancel();
      return new Response("Internal Server Error", { status: 500 });
    }
    if (options.token && req.headers.get("authorization") !== `Bearer ${options.token}`) {
      return options.unauthorized();
    }
    return await handler(req);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests,
    failNext(n) {
      failing = n;
    },
    close: () => server.shutdown(),
  };
}

/** A URL on 127.0.0.1 where nothing listens (connection refused). */
export function downUrl(): string {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return `http://127.0.0.1:${port}`;
}

/** What a base model generates with: the identity of "no adapter". */
export const BASE = "base";

const WORDS = [
  "the",
  "cat",
  "sat",
  "on",
  "a",
  "mat",
  "and",
  "saw",
  "red",
  "blue",
  "fox",
  "ran",
  "far",
  "up",
  "sky",
  "sea",
];

/** Deterministic output of `tokens` tokens for (prompt, identity): text and log-probabilities. */
export function generated(
  prompt: string,
  identity: string,
  tokens = 8,
): { words: string[]; logprobs: number[] } {
  const digest = createHash("sha256").update(`${identity}\0${prompt}`).digest();
  const words: string[] = [], logprobs: number[] = [];
  for (let i = 0; i < tokens; i++) {
    words.push(WORDS[digest[i] % WORDS.length]);
    logprobs.push(-digest[i + 8] / 64);
  }
  return { words, logprobs };
}

/** The text of {@link generated}, each word with a leading space. */
export function generatedText(prompt: string, identity: string, tokens = 8): string {
  return generated(prompt, identity, tokens).words.map((w) => ` ${w}`).join("");
}

/**
 * What an adapter folder generates with: a digest of its weights, or {@link BASE} when the folder holds the
 * NO_EFFECT marker (the stand-in for tensor names that do not match the model, which servers load and ignore).
 */
export async function adapterIdentity(dir: string): Promise<string> {
  try {
    await Deno.stat(join(dir, "NO_EFFECT"));
    return BASE;
  } catch {
    const bytes = await Deno.readFile(join(dir, "adapter_model.safetensors"));
    return createHash("sha256").update(bytes).digest("hex");
  }
}

/** The parsed `adapter_config.json` of a folder, or null when there is none. */
export async function adapterConfig(dir: string): Promise<Record<string, unknown> | null> {
  try {
    return JSON.parse(await Deno.readTextFile(join(dir, "adapter_config.json")));
  } catch {
    return null;
  }
}

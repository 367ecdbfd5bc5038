/**
 * Sidecars as users run them, for the end-to-end and multi-host tests: `flexora serve` processes started on
 * port 0, each with its own data dir (and store), their output kept for a failing test's message; and a few
 * calls to them.
 *
 * @module
 */

import { join } from "node:path";
import { ROOT } from "../model/shared.ts";

export const TOKEN = "fleet-token";
const MAIN = join(ROOT, "src/cli/main.ts");

/** A running `flexora serve`. */
export interface ServeProcess {
  readonly url: string;
  readonly child: Deno.ChildProcess;
  readonly dataDir: string;
  /** Everything it printed so far. */
  readonly log: string[];
  /** SIGTERM (a clean stop) or SIGKILL, and wait for it. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
}

/** Starts `flexora serve --port 0 --data-dir <dataDir> --root ROOT ...args` and resolves once it listens. */
export async function serve(dataDir: string, args: readonly string[]): Promise<ServeProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-ffi",
      "--allow-sys",
      "--allow-net=127.0.0.1",
      "--allow-run",
      MAIN,
      "serve",
      "--port",
      "0",
      "--data-dir",
      dataDir,
      "--root",
      ROOT,
      "--device",
      "cpu",
      ...args,
    ],
    cwd: ROOT,
    env: { FLEXORA_TOKEN: TOKEN, NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log: string[] = [];
  let url = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = Date.now() + 60_000;
  while (!url && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    log.push(value);
    url = /flexora sidecar on (http:\/\/127\.0\.0\.1:\d+)/.exec(log.join(""))?.[1] ?? "";
  }
  if (!url) {
    child.kill("SIGKILL");
    await child.status;
    throw new Error(`the sidecar did not start:\n${log.join("")}`);
  }
  // Keep draining stderr: a sidecar writing to a closed pipe would die.
  const drained = (async () => {
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: "" }));
      if (done) break;
      log.push(value);
    }
  })();
  let stopped: Promise<void> | null = null;
  return {
    url,
    child,
    dataDir,
    log,
    stop(signal = "SIGTERM") {
      stopped ??= (async () => {
        try {
          child.kill(signal);
        } catch { /* it has exited */ }
        await child.status;
        await drained;
      })();
      return stopped;
    },
  };
}

const headers = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };

/** A job as the routes answer it (the fields these tests read). */
export interface JobView {
  readonly id: string;
  readonly state: string;
  readonly progress: { stage?: string; step?: number } | null;
  readonly result: Record<string, unknown> | null;
  readonly error: { code: string; message: string } | null;
  readonly retries: number;
  readonly owner?: string | null;
}

/** GET/POST to a sidecar with the token; the parsed body, or an error with the status and body. */
// deno-lint-ignore no-explicit-any
export async function call(url: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) {
    throw new Error(`${body === undefined ? "GET" : "POST"} ${path} on ${url}: ${res.status} ${text}`);
  }
  return JSON.parse(text);
}

/** The smallest real job on the fixtures: LoRA on every layer, one short epoch, a checkpoint every step. */
export function tinyJob(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model: join(ROOT, "fixtures/tiny-llama"),
    data: join(ROOT, "fixtures/tiny-data"),
    name,
    method: "lora",
    options: { retrain: { epochs: 1, batchSize: 16 }, maxLength: 32, checkpointEvery: 1 },
    ...extra,
  };
}

/** Polls a job on `url` until `until` holds; throws when it ends otherwise or time runs out. */
export async function waitFor(
  url: () => string,
  id: string,
  until: (job: JobView) => boolean,
  what: string,
  logs: () => string,
  timeoutMs = 90_000,
): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  let job: JobView | null = null;
  while (Date.now() < deadline) {
    job = await call(url(), `/v1/jobs/${id}`).catch(() => null);
    if (job && until(job)) return job;
    if (job && ["failed", "attach_failed"].includes(job.state)) {
      throw new Error(
        `job ${id} ended ${job.state} waiting for ${what}: ${JSON.stringify(job.error)}\n${logs()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (job ${id}: ${JSON.stringify(job)})\n${logs()}`);
}

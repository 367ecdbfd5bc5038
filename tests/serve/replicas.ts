/**
 * Replicas of the real embedded inference server on 127.0.0.1 for the desired-state tests: each can be killed,
 * restarted empty on the same port, partitioned (every request answered 503, adapters kept), or made to leave
 * one adapter folder out of `GET /v1/models` (so its verification fails). Loads are logged with their times.
 *
 * @module
 */

import { dirname } from "node:path";
import type { Model } from "../../src/model/model.ts";
import { createEmbeddedApp, type EmbeddedServer } from "../../src/serve/embedded/app.ts";
import { TINY, writeTestAdapter } from "./embedded/helpers.ts";
import { writeFlexoraJson } from "../flexora/report_fixture.ts";

export { TINY };

/** One `POST /v1/load_lora_adapter` that succeeded: its path, and when it started and was answered. */
export interface LoadRecord {
  readonly path: string;
  readonly started: number;
  readonly ended: number;
}

/** One replica. */
export class Replica {
  readonly port: number;
  readonly loads: LoadRecord[] = [];
  /** While true every request is answered 503 (the server keeps what it has loaded). */
  partitioned = false;
  /** An adapter folder `GET /v1/models` leaves out, so a load from it fails verification. */
  hidden: string | null = null;
  #embedded: EmbeddedServer;
  #http: Deno.HttpServer<Deno.NetAddr> | null;

  private constructor(readonly model: Model, port: number) {
    this.#embedded = createEmbeddedApp({ model, servedName: "tiny-llama" });
    this.#http = this.#serve(port);
    this.port = this.#http.addr.port;
  }

  /** Starts a replica on a free port. */
  static start(model: Model): Replica {
    return new Replica(model, 0);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  #serve(port: number): Deno.HttpServer<Deno.NetAddr> {
    return Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, async (req) => {
      if (this.partitioned) {
        await req.body?.cancel();
        return Response.json({ error: { message: "partitioned", type: "ServiceUnavailable", code: 503 } }, {
          status: 503,
        });
      }
      const path = new URL(req.url).pathname;
      if (path === "/v1/load_lora_adapter") {
        const body = await req.clone().json();
        const started = performance.now();
        const res = await this.#embedded.app.fetch(req);
        if (res.ok) this.loads.push({ path: body.lora_path, started, ended: performance.now() });
        return res;
      }
      const res = await this.#embedded.app.fetch(req);
      if (path !== "/v1/models" || this.hidden === null) return res;
      const body = await res.json();
      return Response.json({
        ...body,
        data: body.data.filter((c: { root: string }) => c.root !== this.hidden),
      });
    });
  }

  /** Stops the server and forgets its adapters. */
  async kill(): Promise<void> {
    await this.#http?.shutdown();
    this.#http = null;
    await this.#embedded.close();
  }

  /** A fresh, empty server on the same port. */
  restart(): void {
    this.#embedded = createEmbeddedApp({ model: this.model, servedName: "tiny-llama" });
    this.#http = this.#serve(this.port);
  }

  /** Adapter names in the replica's own `GET /v1/models` (not through the partition or the filter). */
  async names(): Promise<string[]> {
    const { data } = await (await this.#embedded.app.request("/v1/models")).json();
    return (data as { id: string; parent: string | null }[]).filter((c) => c.parent).map((c) => c.id);
  }

  async close(): Promise<void> {
    if (this.#http) await this.kill();
  }
}

/** The greedy completion a client asks every replica for. */
export const PROMPT = "what color is the ripe banana ? answer :";

/** `POST /v1/completions` with `model`; the status and the text (or the error message). */
export async function complete(url: string, model: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt: PROMPT, max_tokens: 4, temperature: 0 }),
  });
  const body = await res.json();
  return { status: res.status, text: res.ok ? body.choices[0].text : body.error?.message };
}

/**
 * Writes an adapter version into `dir` (`<dataDir>/adapters/<name>/<version>` for the sidecar to list it): PEFT
 * weights seeded by `seed`, and the `flexora.json` the adapter list reads.
 */
export async function writeVersion(
  model: Model,
  dir: string,
  seed: number,
): Promise<string> {
  await Deno.mkdir(dirname(dir), { recursive: true });
  await writeTestAdapter(dir, model.config, { seed });
  await writeFlexoraJson(dir, { method: "lora", selectedLayers: [0, 1, 2] });
  return dir;
}

/** What `version`'s adapter answers to {@link PROMPT}, computed on a server of its own. */
export async function expectedText(model: Model, path: string): Promise<string> {
  const server = createEmbeddedApp({ model, servedName: "tiny-llama" });
  try {
    const load = await server.app.request("/v1/load_lora_adapter", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ lora_name: "probe", lora_path: path }),
    });
    if (!load.ok) throw new Error(`cannot load ${path}: ${await load.text()}`);
    const res = await server.app.request("/v1/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "probe", prompt: PROMPT, max_tokens: 4, temperature: 0 }),
    });
    return (await res.json()).choices[0].text;
  } finally {
    await server.close();
  }
}

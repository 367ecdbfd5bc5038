/**
 * In-memory replicas behind a plugin, and a clock the test moves by hand, for the reconciler's unit tests: each
 * replica can be down (no answer), lose its adapters (a restart) or refuse to verify one folder.
 *
 * @module
 */

import { ServerError } from "../../../plugins/http.ts";
import { AttachError, type ServerConfig, type ServerPlugin } from "../../../plugins/types.ts";
import type { Clock } from "../../../src/serve/reconcile/mod.ts";

/** One replica's registry. */
export interface MemoryReplica {
  down: boolean;
  /** Name → the folder it was loaded from. */
  readonly loaded: Map<string, string>;
  /** A folder that loads but does not change the output. */
  noEffect: string | null;
  /** Every call, as "list", "attach NAME PATH", "detach NAME", "verify NAME". */
  readonly calls: string[];
}

/** Replicas by URL, and the plugin that drives them. */
export function memoryReplicas(urls: readonly string[]): {
  replicas: Map<string, MemoryReplica>;
  plugin: ServerPlugin;
} {
  const replicas = new Map(
    urls.map((u) => [u, { down: false, loaded: new Map(), noEffect: null, calls: [] } as MemoryReplica]),
  );
  const reach = (server: ServerConfig, call: string): MemoryReplica => {
    const r = replicas.get(server.url)!;
    r.calls.push(call);
    if (r.down) {
      const cause = new ServerError(`GET /v1/models to ${server.url} failed: connection refused`, {
        serverMessage: "connection refused",
        attempts: 1,
      });
      throw new AttachError(`server '${server.name}': ${cause.message}`, { cause });
    }
    return r;
  };
  const verification = (r: MemoryReplica, name: string, path: string) => ({
    listed: r.loaded.get(name) === path,
    changesOutput: r.loaded.get(name) === path && path !== r.noEffect,
    detail: `loaded from ${r.loaded.get(name)}`,
  });
  const plugin: ServerPlugin = {
    kind: "vllm",
    capabilities: () => ({ load: true, unload: true, list: true, generate: true }),
    attach: (server, adapter) => {
      const r = reach(server, `attach ${adapter.name} ${adapter.path}`);
      r.loaded.set(adapter.name, adapter.path);
      const v = verification(r, adapter.name, adapter.path);
      return Promise.resolve({
        server: server.name,
        adapter: adapter.name,
        verification: v,
        attempts: 1,
        millis: 0,
      });
    },
    detach: (server, name) => {
      const r = reach(server, `detach ${name}`);
      if (!r.loaded.delete(name)) {
        return Promise.reject(new AttachError(`'${name}' cannot be found`, { status: 404 }));
      }
      return Promise.resolve();
    },
    list: (server) => Promise.resolve([...reach(server, "list").loaded.keys()].sort()),
    verify: (server, adapter) =>
      Promise.resolve(verification(reach(server, `verify ${adapter.name}`), adapter.name, adapter.path)),
    reachable: (server) => Promise.resolve(!replicas.get(server.url)!.down),
  };
  return { replicas, plugin };
}

/** A clock that moves only when told; `random()` is 0.5 (no jitter). */
export class ManualClock implements Clock {
  #now = 0;
  #sleepers: { at: number; wake: () => void }[] = [];

  now(): number {
    return this.#now;
  }

  random(): number {
    return 0.5;
  }

  sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const sleeper = { at: this.#now + ms, wake: resolve };
      this.#sleepers.push(sleeper);
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
  }

  /** Moves time forward by `ms`, waking each sleeper at its time and letting what it starts finish. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await settle();
      const next = this.#sleepers.filter((s) => s.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.#sleepers.splice(this.#sleepers.indexOf(next), 1);
      this.#now = next.at;
      next.wake();
    }
    this.#now = end;
    await settle();
  }
}

/** Lets every pending promise chain (the in-memory plugin never waits on I/O) run to its end. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0));
}

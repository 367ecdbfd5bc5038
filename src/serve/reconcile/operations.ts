/**
 * Attach and detach as the routes and the job manager ask for them: change the desired state, act on every
 * replica, and answer with one report, or one error when no replica could do it.
 *
 * An attachment stays desired when at least one replica serves it or a failure may pass (a replica down, a 5xx):
 * the loop then finishes the job. It is taken back when every replica refused it for good (a 4xx, a capability the
 * server lacks, a failed verification), since retrying cannot help.
 *
 * @module
 */

import { AttachError, UnsupportedError, type Verification } from "../../../plugins/types.ts";
import type { Attachment } from "../store/mod.ts";
import type { Reconciler, ReplicaOutcome } from "./reconciler.ts";

/** The answer to an attach: the desired row and what each replica did. */
export interface AttachReport {
  readonly server: string;
  /** The name requests use. */
  readonly adapter: string;
  readonly version: string;
  readonly path: string;
  /** Every replica serves this version, verified. */
  readonly complete: boolean;
  /** The attachment stays desired: the loop repairs replicas that failed. */
  readonly desired: true;
  readonly replicas: ReplicaOutcome[];
  /** The first replica's verification that ran (absent when every replica already served this version). */
  readonly verification?: Verification;
  /** Attempts over all replicas, and the time they took. */
  readonly attempts: number;
  readonly millis: number;
}

/** The answer to a detach. */
export interface DetachReport {
  readonly server: string;
  readonly adapter: string;
  readonly detached: true;
  /** Every replica was seen without it; otherwise the loop unloads it where it shows up. */
  readonly complete: boolean;
  readonly replicas: ReplicaOutcome[];
}

/** One line over the failed replicas: the error alone for one replica, `url: error; …` for several. */
function failures(replicas: readonly ReplicaOutcome[]): string {
  const failed = replicas.filter((r) => !r.ok);
  if (replicas.length === 1) return failed[0]?.error ?? "";
  return failed.map((r) => `${r.url}: ${r.error}`).join("; ");
}

/**
 * Makes `a` desired and attaches it to every replica of its server, one by one. Throws when no replica serves it:
 * an {@link AttachError} (or {@link UnsupportedError} when the server cannot do it), whose message says whether
 * the attachment stays desired.
 *
 * @example
 * ```ts
 * import type { ServerKind, ServerPlugin } from "../../../plugins/types.ts";
 * import { attachEverywhere, Reconciler } from "./mod.ts";
 * import { SqliteStore } from "../store/mod.ts";
 * const loaded = new Map<string, Map<string, string>>(); // replica URL → name → path
 * const at = (url: string) => loaded.get(url) ?? loaded.set(url, new Map()).get(url)!;
 * const verification = { listed: true, changesOutput: true, detail: "probe differs" };
 * const plugin: ServerPlugin = {
 *   kind: "vllm",
 *   capabilities: () => ({ load: true, unload: true, list: true, generate: true }),
 *   attach: (s, a) => (at(s.url).set(a.name, a.path),
 *     Promise.resolve({ server: s.name, adapter: a.name, verification, attempts: 1, millis: 0 })),
 *   detach: (s, name) => (at(s.url).delete(name), Promise.resolve()),
 *   list: (s) => Promise.resolve([...at(s.url).keys()]),
 *   verify: () => Promise.resolve(verification),
 *   reachable: () => Promise.resolve(true),
 * };
 * const kinds: ServerKind[] = ["vllm", "sglang", "lorax", "llamacpp", "ollama", "embedded"];
 * const store = new SqliteStore(":memory:");
 * const reconciler = new Reconciler({
 *   store: store.desired,
 *   servers: [{ name: "vllm-a", kind: "vllm", url: "http://a:8000", replicas: ["http://a:8000", "http://b:8000"] }],
 *   plugins: Object.fromEntries(kinds.map((k) => [k, plugin])) as Record<ServerKind, ServerPlugin>,
 *   call: { fetch },
 * });
 * const sql = { server: "vllm-a", name: "sql", adapter: "sql", version: "v1", path: "/adapters/sql/v1", rank: 8 };
 * const report = await attachEverywhere(reconciler, sql);
 * if (!report.complete || report.replicas.map((r) => r.action).join() !== "attached,attached") throw new Error();
 * if (at("http://b:8000").get("sql") !== "/adapters/sql/v1") throw new Error("on every replica");
 * await store.close();
 * ```
 */
export async function attachEverywhere(reconciler: Reconciler, a: Attachment): Promise<AttachReport> {
  const { previous, replicas } = await reconciler.attach(a);
  if (!replicas.some((r) => r.ok)) {
    const why = failures(replicas);
    if (replicas.some((r) => r.transient)) {
      throw new AttachError(
        `${why} (the attachment stays desired: the sidecar retries every ${
          reconciler.settings.intervalMs / 1000
        } s)`,
      );
    }
    await reconciler.restore(a.server, a.name, previous);
    throw replicas.every((r) => r.unsupported) ? new UnsupportedError(why) : new AttachError(why);
  }
  const verification = replicas.find((r) => r.verification)?.verification;
  return {
    server: a.server,
    adapter: a.name,
    version: a.version,
    path: a.path,
    complete: replicas.every((r) => r.ok),
    desired: true,
    replicas,
    ...(verification ? { verification } : {}),
    attempts: replicas.reduce((n, r) => n + (r.attempts ?? 0), 0),
    millis: replicas.reduce((n, r) => n + (r.millis ?? 0), 0),
  };
}

/** A detach of a name that is neither desired nor loaded on any replica (answered 404). */
export class NotAttachedError extends Error {
  override name = "NotAttachedError";
}

/**
 * Marks `name` detached on `server` and unloads it from every replica. Throws {@link NotAttachedError} when it was
 * neither desired nor loaded anywhere, and the error when every replica refused for good (the row is put back).
 */
export async function detachEverywhere(
  reconciler: Reconciler,
  server: string,
  name: string,
): Promise<DetachReport> {
  const { previous, replicas } = await reconciler.detach(server, name);
  if (previous?.state !== "attached" && replicas.every((r) => r.action === "absent")) {
    await reconciler.restore(server, name, previous);
    throw new NotAttachedError(`'${name}' is not attached to server '${server}'`);
  }
  if (!replicas.some((r) => r.ok) && !replicas.some((r) => r.transient)) {
    await reconciler.restore(server, name, previous);
    const why = failures(replicas);
    throw replicas.every((r) => r.unsupported) ? new UnsupportedError(why) : new AttachError(why);
  }
  return { server, adapter: name, detached: true, complete: replicas.every((r) => r.ok), replicas };
}

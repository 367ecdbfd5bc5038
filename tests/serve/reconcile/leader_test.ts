/**
 * Two sidecars' reconcilers sharing one store (one SQLite file, two connections) and the same in-memory replicas:
 * the loop runs on the leader only, the other takes over when it stops, and attaches started on both at once load
 * an adapter once (each replica's lock is a lease both take).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { ServerKind, ServerPlugin } from "../../../plugins/types.ts";
import { attachEverywhere, type ReconcileEvent, Reconciler } from "../../../src/serve/reconcile/mod.ts";
import { SqliteStore } from "../../../src/serve/store/mod.ts";
import { memoryReplicas } from "./memory.ts";

const A = "http://10.0.0.1:8000";
const INTERVAL = 300;

async function pair() {
  const dir = await Deno.makeTempDir({ prefix: "flexora-leader-" });
  const { replicas, plugin } = memoryReplicas([A]);
  const plugins = Object.fromEntries(
    (["vllm", "sglang", "lorax", "llamacpp", "ollama", "embedded"] as ServerKind[]).map((k) => [k, plugin]),
  ) as { [K in ServerKind]: ServerPlugin };
  const stores = [new SqliteStore(join(dir, "jobs.sqlite")), new SqliteStore(join(dir, "jobs.sqlite"))];
  const events: ReconcileEvent[][] = [[], []];
  const reconcilers = stores.map((store, i) =>
    new Reconciler({
      store: store.desired,
      servers: [{ name: "vllm", kind: "vllm", url: A }],
      plugins,
      call: { fetch },
      settings: { intervalMs: INTERVAL, jitter: 0 },
      fleet: { leases: store, holder: `sidecar-${i}` },
      onEvent: (e) => events[i].push(e),
    })
  );
  const close = async () => {
    await Promise.all(reconcilers.map((r) => r.stop()));
    await Promise.all(stores.map((s) => s.close()));
    await Deno.remove(dir, { recursive: true });
  };
  return { replica: replicas.get(A)!, stores, reconcilers, events, close };
}

const attachment = (version: string) => ({
  server: "vllm",
  name: "sql",
  adapter: "sql",
  version,
  path: `/adapters/sql/${version}`,
  rank: 8,
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const leaders = async (rs: Reconciler[]) =>
  (await Promise.all(rs.map(async (r) => (await r.report())[0].leader))).flatMap((l, i) => l ? [i] : []);

Deno.test("fleet reconcile: one leader runs the loop; when it stops, the other takes over within two intervals", async () => {
  const s = await pair();
  try {
    await s.stores[0].desired.attach(attachment("v1"));
    s.reconcilers.forEach((r) => r.start());
    await sleep(3 * INTERVAL);
    const [leader, ...more] = await leaders(s.reconcilers);
    assert.deepEqual(more, [], "one leader");
    const follower = 1 - leader;
    assert.ok(s.events[leader].some((e) => e.trigger === "loop"), "the leader passes");
    assert.deepEqual(s.events[follower].filter((e) => e.trigger === "loop"), [], "the follower does not");
    assert.deepEqual(s.replica.calls.filter((c) => c.startsWith("attach")), ["attach sql /adapters/sql/v1"]);

    await s.reconcilers[leader].stop();
    s.replica.loaded.clear(); // the replica restarted meanwhile
    const stopped = performance.now();
    while (!s.replica.loaded.has("sql") && performance.now() - stopped < 10 * INTERVAL) await sleep(10);
    assert.ok(s.replica.loaded.has("sql"), "the new leader repaired the replica");
    assert.ok(performance.now() - stopped <= 2 * INTERVAL, "within two intervals");
    assert.deepEqual(await leaders([s.reconcilers[follower]]), [0]);
  } finally {
    await s.close();
  }
});

Deno.test("fleet reconcile: attaches of one version started on two sidecars at once load it once", async () => {
  const s = await pair();
  try {
    const reports = await Promise.all(s.reconcilers.map((r) => attachEverywhere(r, attachment("v2"))));
    assert.ok(reports.every((r) => r.replicas[0].ok), JSON.stringify(reports));
    assert.deepEqual(s.replica.calls.filter((c) => c.startsWith("attach")), ["attach sql /adapters/sql/v2"]);
  } finally {
    await s.close();
  }
});

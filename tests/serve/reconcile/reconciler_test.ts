/**
 * The reconciler on in-memory replicas with a hand-moved clock: when passes happen (interval, backoff, its cap),
 * what they repair, swap, roll back, skip and unload, and what attach and detach keep as desired.
 */

import assert from "node:assert/strict";
import type { ServerKind, ServerPlugin } from "../../../plugins/types.ts";
import {
  attachEverywhere,
  type Attachment,
  detachEverywhere,
  NotAttachedError,
  type ReconcileEvent,
  Reconciler,
} from "../../../src/serve/reconcile/mod.ts";
import { SqliteStore } from "../../../src/serve/store/mod.ts";
import { ManualClock, memoryReplicas, settle } from "./memory.ts";

const A = "http://10.0.0.1:8000", B = "http://10.0.0.2:8000";
const SETTINGS = { intervalMs: 1000, jitter: 0.1, maxBackoffMs: 8000 };

function setup(urls = [A], options: { plugin?: (p: ServerPlugin) => ServerPlugin } = {}) {
  const { replicas, plugin } = memoryReplicas(urls);
  const used = options.plugin ? options.plugin(plugin) : plugin;
  const plugins = Object.fromEntries(
    (["vllm", "sglang", "lorax", "llamacpp", "ollama", "embedded"] as ServerKind[]).map((k) => [k, used]),
  ) as { [K in ServerKind]: ServerPlugin };
  const db = new SqliteStore(":memory:"), store = db.desired;
  const clock = new ManualClock();
  const events: ReconcileEvent[] = [];
  const reconciler = new Reconciler({
    store,
    servers: [{ name: "vllm", kind: "vllm", url: urls[0], replicas: urls }],
    plugins,
    call: { fetch },
    settings: SETTINGS,
    clock,
    onEvent: (e) => events.push(e),
  });
  return { replicas, store, clock, events, reconciler, loops: (e: ReconcileEvent) => e.trigger === "loop" };
}

const version = (v: string, name = "sql"): Attachment => ({
  server: "vllm",
  name,
  adapter: name,
  version: v,
  path: `/adapters/${name}/${v}`,
  rank: 8,
});

Deno.test("a replica that keeps failing is retried after 1, 2, 4, 8 intervals, capped; one success resets it", async () => {
  const s = setup();
  await s.store.attach(version("v1"));
  s.replicas.get(A)!.down = true;
  s.reconciler.start();
  await s.clock.advance(24_000);
  const starts = s.events.filter(s.loops).map((e) => e.startedAt);
  // The first pass comes at random × interval × jitter (50 ms); after the k-th failure in a row the wait is
  // interval × 2^(k−1), at most 8 intervals.
  assert.deepEqual(starts, [50, 1050, 3050, 7050, 15050, 23050]);
  const [replica] = (await s.reconciler.report())[0].replicas;
  assert.deepEqual([replica.state, replica.consecutiveFailures], ["failing", 6]);
  assert.equal(replica.nextAttempt, new Date(31_050).toISOString());
  assert.match(replica.lastError!, /connection refused/);

  s.replicas.get(A)!.down = false;
  await s.clock.advance(8_100);
  const after = s.events.filter(s.loops).slice(6);
  assert.deepEqual(after.map((e) => [e.startedAt, e.error]), [[31_050, null], [32_050, null]]);
  assert.equal(after[0].outcomes[0].action, "attached");
  assert.equal((await s.reconciler.report())[0].replicas[0].consecutiveFailures, 0);
  await s.reconciler.stop();
});

Deno.test("what a replica lost (a restart) is loaded again on the next pass, and reported as repaired", async () => {
  const s = setup([A, B]);
  await attachEverywhere(s.reconciler, version("v1"));
  s.reconciler.start();
  s.replicas.get(B)!.loaded.clear();
  await s.clock.advance(100);
  const repaired = s.events.filter(s.loops).flatMap((e) => e.outcomes.map((o) => [e.url, o.action]));
  assert.deepEqual(repaired.sort(), [[A, "unchanged"], [B, "repaired"]]);
  assert.equal(s.replicas.get(B)!.loaded.get("sql"), "/adapters/sql/v1");
  await s.reconciler.stop();
});

Deno.test("a new version that fails verification: the old one is loaded again, and the loop does not retry it", async () => {
  const s = setup();
  await attachEverywhere(s.reconciler, version("v1"));
  const replica = s.replicas.get(A)!;
  replica.noEffect = "/adapters/sql/v2";
  const report = await attachEverywhere(s.reconciler, version("v2")).catch((e) => e);
  assert.ok(report instanceof Error);
  assert.match(report.message, /verification failed: .*; kept version v1/);
  assert.equal(replica.loaded.get("sql"), "/adapters/sql/v1");
  // Failed for good on its only replica: the desired version goes back to v1.
  const row = await s.store.get("vllm", "sql");
  assert.equal(row?.state === "attached" ? row.version : row, "v1");

  // Desired again without an explicit attach (as the table might say after a restart of the sidecar): the loop
  // skips the version this replica refused instead of serving it until its check fails again.
  await s.store.attach(version("v2"));
  s.reconciler.start();
  const loadsOfV2 = () => replica.calls.filter((c) => c === "attach sql /adapters/sql/v2").length;
  assert.equal(loadsOfV2(), 1);
  await s.clock.advance(2_100);
  const actions = s.events.filter(s.loops).map((e) => e.outcomes[0].action);
  assert.deepEqual(actions, ["skipped", "skipped", "skipped"]);
  assert.equal(loadsOfV2(), 1);
  const [state] = (await s.reconciler.report())[0].replicas;
  assert.deepEqual(state.adapters.map((a) => [a.name, a.version]), [["sql", "v1"]]);
  assert.match(state.adapters[0].error!, /kept version v1/);

  // A newer version is tried.
  replica.noEffect = null;
  await s.store.attach(version("v3"));
  await s.clock.advance(1_000);
  assert.equal(s.events.at(-1)?.outcomes[0].action, "swapped");
  assert.equal(replica.loaded.get("sql"), "/adapters/sql/v3");
  await s.reconciler.stop();
});

Deno.test("a detach while a replica is down: kept off when it returns, and the tombstone is dropped", async () => {
  const s = setup([A, B]);
  await attachEverywhere(s.reconciler, version("v1"));
  await attachEverywhere(s.reconciler, version("v1", "other"));
  s.replicas.get(B)!.down = true;
  const from = s.events.length;
  const report = await detachEverywhere(s.reconciler, "vllm", "sql");
  assert.deepEqual(report.replicas.map((r) => [r.action, r.ok]), [["detached", true], ["failed", false]]);
  assert.equal(report.complete, false);
  assert.equal((await s.store.get("vllm", "sql"))?.state, "detached");

  s.reconciler.start();
  await s.clock.advance(1_100); // B is still down
  s.replicas.get(B)!.down = false; // back, with `sql` still loaded
  await s.clock.advance(3_000);
  assert.deepEqual([...s.replicas.get(B)!.loaded.keys()], ["other"]);
  assert.deepEqual([...s.replicas.get(A)!.loaded.keys()], ["other"]);
  assert.equal(await s.store.get("vllm", "sql"), null);
  const sqlActions = s.events.slice(from).flatMap((e) => e.outcomes)
    .filter((o) => o.name === "sql").map((o) => o.action);
  assert.ok(
    !sqlActions.some((a) => a === "attached" || a === "repaired" || a === "swapped"),
    sqlActions.join(),
  );
  assert.ok(sqlActions.includes("detached"));
  await s.reconciler.stop();

  await assert.rejects(detachEverywhere(s.reconciler, "vllm", "sql"), NotAttachedError);
});

Deno.test("attach keeps what may still succeed (a replica down) and takes back what cannot (verification)", async () => {
  const s = setup([A, B]);
  for (const r of s.replicas.values()) r.down = true;
  const down = await attachEverywhere(s.reconciler, version("v1")).catch((e) => e);
  assert.match(down.message, /10\.0\.0\.1.*connection refused; http:\/\/10\.0\.0\.2.*stays desired/);
  assert.equal((await s.store.get("vllm", "sql"))?.state, "attached");

  for (const r of s.replicas.values()) Object.assign(r, { down: false, noEffect: "/adapters/beta/v1" });
  await assert.rejects(attachEverywhere(s.reconciler, version("v1", "beta")), /verification failed/);
  assert.equal(await s.store.get("vllm", "beta"), null);
  assert.deepEqual([...s.replicas.get(A)!.loaded.keys()], ["sql"], "the failed first load was unloaded");
});

Deno.test("after a sidecar restart a loaded version is verified in place, not loaded again; another path is swapped", async () => {
  const s = setup([A, B]);
  await s.store.attach(version("v2"));
  s.replicas.get(A)!.loaded.set("sql", "/adapters/sql/v2");
  s.replicas.get(B)!.loaded.set("sql", "/adapters/sql/v1");
  s.reconciler.start();
  await s.clock.advance(100);
  const byUrl = Object.fromEntries(s.events.map((e) => [e.url, e.outcomes[0].action]));
  assert.deepEqual(byUrl, { [A]: "unchanged", [B]: "swapped" });
  assert.ok(!s.replicas.get(A)!.calls.some((c) => c.startsWith("attach")));
  await s.reconciler.stop();
});

Deno.test("replicas swap one at a time, even when their loops fire together", async () => {
  let inFlight = 0, most = 0;
  const s = setup([A, B], {
    plugin: (p) => ({
      ...p,
      attach: async (server, adapter, ctx) => {
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 20));
        inFlight--;
        return await p.attach(server, adapter, ctx);
      },
    }),
  });
  await attachEverywhere(s.reconciler, version("v1"));
  most = 0;
  await s.store.attach(version("v2"));
  s.reconciler.start();
  await s.clock.advance(60); // both loops start their first pass at 50 ms
  while (s.events.filter(s.loops).length < 2) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(s.events.filter(s.loops).map((e) => e.outcomes[0].action), ["swapped", "swapped"]);
  assert.equal(most, 1);
  await s.reconciler.stop();
  await settle();
});

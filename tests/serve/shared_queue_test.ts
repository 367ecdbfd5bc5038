/**
 * Two sidecars sharing one store (one SQLite file here, in one process, with fake runners; the same with real
 * ones on PostgreSQL is tests/serve/fleet_test.ts): a job submitted to one is claimed by the other when it has the
 * free slot, a cancel sent to either stops the job where it runs, a follower of the event stream on the other
 * sidecar sees every change, and a job whose sidecar died is taken back once its lease lapses and resumed.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { readSpec } from "../../src/serve/protocol.ts";
import { SqliteStore } from "../../src/serve/store/mod.ts";
import { fakeSpawn, jobBody, type TestSidecar, testSidecar, waitFor } from "./helpers.ts";

const HEARTBEAT = 50;

async function pair(holdA: Promise<void>, holdB: Promise<void>): Promise<[TestSidecar, TestSidecar]> {
  const a = await testSidecar({ sidecarId: "a", heartbeatMs: HEARTBEAT, spawn: fakeSpawn({ hold: holdA }) });
  const b = await testSidecar({
    dataDir: join(a.dir, "state"),
    sidecarId: "b",
    heartbeatMs: HEARTBEAT,
    spawn: fakeSpawn({ hold: holdB }),
  });
  return [a, b];
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: timed out`)), ms)),
  ]);

Deno.test("shared queue: the free sidecar claims, a cancel reaches the owner, events reach a follower elsewhere", async () => {
  let releaseA = () => {};
  const [a, b] = await pair(new Promise((r) => (releaseA = r)), new Promise(() => {}));
  try {
    const submit = async (s: TestSidecar) =>
      (await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json()).id as string;
    const first = await submit(a); // a claims it and holds it
    assert.equal((await waitFor(a.request, first, ["searching"])).owner, "a");
    const second = await submit(a); // a is busy: b's heartbeat claims it
    assert.equal((await waitFor(b.request, second, ["searching"])).owner, "b");

    // Cancel through a: b's heartbeat sees the request, stops its runner (which checkpoints), and is free again.
    assert.equal((await a.request(`/v1/jobs/${second}/cancel`, { method: "POST" })).status, 200);
    assert.equal((await waitFor(a.request, second, ["cancelled"])).state, "cancelled");
    await within(b.manager.idle, 2000, "b's worker is free again");

    // Followed on b while a runs it: every point and the final state arrive, and the stream ends.
    const stream = await b.request(`/v1/jobs/${first}/events`);
    const text = within(stream.text(), 5000, "the stream ends with the job");
    await new Promise((r) => setTimeout(r, 3 * HEARTBEAT));
    releaseA();
    const events = (await text).split("\n\n").filter((e) => e.includes("data: "))
      .map((e) => JSON.parse(e.split("\n").find((l) => l.startsWith("data: "))!.slice(6)));
    assert.equal(events.at(-1).job.state, "succeeded");
    const steps = events.flatMap((e) =>
      e.points.map((p: { stage: string; step: number }) => `${p.stage}${p.step}`)
    );
    assert.deepEqual(steps, ["search2", "retrain1"], "the points made after the stream began, once each");
  } finally {
    await b.close();
    await a.close();
  }
});

Deno.test("shared queue: a job whose sidecar died is taken back when its lease lapses and resumed elsewhere", async () => {
  const specs: string[] = [];
  const inner = fakeSpawn();
  const b = await testSidecar({
    sidecarId: "b",
    heartbeatMs: HEARTBEAT,
    spawn: (file, options) => (specs.push(file), inner(file, options)),
  });
  // Another sidecar ("ghost") claimed a job on the shared store, then died: it renews nothing.
  const store = new SqliteStore(join(b.dir, "state", "jobs.sqlite"));
  try {
    await store.create("orphan", { ...JSON.parse(jobBody(b.dir)), options: {} });
    // Claimed with no timer turn between: b's heartbeat cannot take it first.
    assert.equal((await store.claim({ owner: "ghost", leaseMs: 300, devices: ["cpu"] }))?.id, "orphan");
    await store.update("orphan", { state: "retraining" }, "ghost");
    const before = Date.now();
    const job = await waitFor(b.request, "orphan", ["succeeded"]);
    assert.ok(Date.now() - before >= 250, "not before the ghost's lease lapsed");
    assert.equal(job.owner, "b");
    assert.equal((await readSpec(specs[0])).resume, true, "resumed from its checkpoint");
  } finally {
    await store.close();
    await b.close();
  }
});

Deno.test("shared queue: a job whose model this host lacks stays queued for another sidecar; the next one runs", async () => {
  const b = await testSidecar({ sidecarId: "b", heartbeatMs: HEARTBEAT });
  const store = new SqliteStore(join(b.dir, "state", "jobs.sqlite"));
  try {
    const body = { ...JSON.parse(jobBody(b.dir)), options: {} };
    await store.create("elsewhere", { ...body, model: join(b.dir, "models", "on-another-host") });
    const { id } = await (await b.request("/v1/jobs", { method: "POST", body: b.body() })).json();
    assert.equal((await waitFor(b.request, id, ["succeeded"])).state, "succeeded");
    await new Promise((r) => setTimeout(r, 3 * HEARTBEAT)); // heartbeats claim again: it is not taken
    const left = await store.get("elsewhere");
    assert.equal(left?.state, "queued");
    assert.equal(left?.error, null, "not failed: another sidecar may have the model");
  } finally {
    await store.close();
    await b.close();
  }
});

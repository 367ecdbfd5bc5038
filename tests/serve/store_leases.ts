/**
 * The store's leases, as a suite any store runs (SQLite and PostgreSQL alike): the claim with a lease and a
 * device filter, heartbeats, expiry, fenced updates, cancel requests from another sidecar, and named leases.
 *
 * @module
 */

import assert from "node:assert/strict";
import { LeaseLostError, RUNNER_DIED, type Store } from "../../src/serve/store/mod.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The lease cases, each on a fresh store from `open` (closed after). */
export const LEASE_CASES: Record<string, (store: Store) => Promise<void>> = {
  "a claim takes the oldest queued job its claimer can run, with a lease; no job is taken twice": async (
    store,
  ) => {
    await store.create("gpu", { name: "a", device: "cuda" });
    await store.create("cpu", { name: "b", device: "cpu" });
    await store.create("old", { name: "c" }); // no device: any sidecar
    const claimer = { owner: "host-1", leaseMs: 60_000, devices: ["cpu"] };
    const first = await store.claim(claimer);
    assert.equal(first?.id, "cpu");
    assert.equal(first?.owner, "host-1");
    assert.equal((await store.claim(claimer))?.id, "old");
    assert.equal(await store.claim(claimer), null, "the cuda job waits for a sidecar with cuda");
    const skipping = { owner: "host-2", leaseMs: 60_000, devices: ["cpu", "cuda"], exclude: ["gpu"] };
    assert.equal(await store.claim(skipping), null, "a job the claimer excludes is left queued");
    const gpu = await store.claim({ owner: "host-2", leaseMs: 60_000, devices: ["cpu", "cuda"] });
    assert.equal(gpu?.id, "gpu");
    assert.equal(gpu?.state, "starting");
  },
  "claims racing on one store take each job once": async (store) => {
    for (let i = 0; i < 12; i++) await store.create(`j${i}`, { name: "x" });
    const claims = await Promise.all(
      Array.from({ length: 16 }, (_, i) => store.claim({ owner: `h${i % 3}`, leaseMs: 60_000, devices: [] })),
    );
    const ids = claims.filter((j) => j !== null).map((j) => j!.id).sort();
    assert.deepEqual(ids, Array.from({ length: 12 }, (_, i) => `j${i}`).sort());
  },
  "a heartbeat renews the owner's lease; a lapsed one is taken back by any sidecar, once": async (store) => {
    await store.create("a", { name: "a" });
    await store.create("b", { name: "b" });
    await store.claim({ owner: "h1", leaseMs: 60_000, devices: [] });
    await store.claim({ owner: "h2", leaseMs: 150, devices: [] });
    assert.deepEqual(await store.heartbeat("a", "h1", 60_000), { held: true, cancelRequested: false });
    assert.deepEqual(await store.recover(2), [], "no lease lapsed yet");
    await sleep(300);
    const [taken, ...more] = await Promise.all([store.recover(2, "h3"), store.recover(2, "h4")]);
    const back = [...taken, ...more.flat()].map((j) => [j.id, j.state, j.owner, j.resume]);
    assert.deepEqual(back, [["b", "queued", null, true]]);
    assert.deepEqual(await store.heartbeat("b", "h2", 60_000), { held: false, cancelRequested: false });
    assert.equal((await store.get("a"))?.state, "starting", "a's lease holds");
  },
  "at its start a sidecar takes back the jobs it held in its previous life, leases or not": async (store) => {
    await store.create("a", { name: "a" });
    await store.claim({ owner: "h1", leaseMs: 60_000, devices: [] });
    assert.deepEqual(await store.recover(2, "h2"), []);
    assert.deepEqual((await store.recover(2, "h1")).map((j) => j.id), ["a"]);
  },
  "interrupted jobs are queued again, except those whose runner died too often": async (store) => {
    for (const id of ["stopped", "died-once", "gave-up", "failed"]) await store.create(id, { name: id });
    const died = (retries: number) => ({
      state: "interrupted" as const,
      retries,
      error: { code: RUNNER_DIED, message: "killed" },
    });
    await store.update("stopped", { state: "interrupted" });
    await store.update("died-once", died(1));
    await store.update("gave-up", died(2));
    await store.update("failed", { state: "failed" });
    assert.deepEqual((await store.recover(2)).map((j) => j.id).sort(), ["died-once", "stopped"]);
    assert.equal((await store.get("gave-up"))?.state, "interrupted");
    assert.equal((await store.get("queued"))?.state, undefined);
  },
  "an update fenced by an owner that lost the lease throws and changes nothing": async (store) => {
    await store.create("a", { name: "a" });
    await store.claim({ owner: "h1", leaseMs: 60_000, devices: [] });
    assert.equal((await store.update("a", { state: "retraining" }, "h1")).state, "retraining");
    await store.recover(2, "h1");
    await assert.rejects(store.update("a", { state: "succeeded" }, "h1"), LeaseLostError);
    assert.equal((await store.get("a"))?.state, "queued");
  },
  "a cancel request cancels a queued job at once and marks a running one for its owner": async (store) => {
    await store.create("run", { name: "a" });
    await store.create("wait", { name: "b" });
    await store.claim({ owner: "h1", leaseMs: 60_000, devices: [] });
    assert.equal((await store.requestCancel("wait"))?.state, "cancelled");
    assert.equal((await store.requestCancel("run"))?.state, "starting");
    assert.deepEqual(await store.heartbeat("run", "h1", 60_000), { held: true, cancelRequested: true });
    await store.update("run", { state: "cancelled" }, "h1");
    assert.equal(
      (await store.heartbeat("run", "h1", 60_000)).held,
      true,
      "a job that ended is still its owner's",
    );
    assert.equal(await store.requestCancel("run"), null, "finished: nothing to cancel");
    assert.equal(await store.requestCancel("nope"), null);
  },
  "a named lease has one holder until it lapses or is released": async (store) => {
    assert.equal(await store.acquireLease("reconcile:v", "a", 150), true);
    assert.equal(await store.acquireLease("reconcile:v", "b", 150), false);
    assert.equal(await store.acquireLease("reconcile:v", "a", 150), true, "renewed by its holder");
    await sleep(300);
    assert.equal(await store.acquireLease("reconcile:v", "b", 60_000), true, "lapsed: b takes it");
    await store.releaseLease("reconcile:v", "a"); // not a's any more: nothing happens
    assert.equal(await store.acquireLease("reconcile:v", "a", 150), false);
    await store.releaseLease("reconcile:v", "b");
    assert.equal(await store.acquireLease("reconcile:v", "a", 150), true);
  },
};

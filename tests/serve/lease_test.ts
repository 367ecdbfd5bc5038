/**
 * Leadership through a lease: one leader at a time, a follower takes over after the leader dies (within the
 * lease's time plus a renewal period), and a leader cut off from the database steps down before its lease can
 * expire. The table here keeps rows in memory with the database's rule; the stores' own `acquireLease` is
 * checked by the store conformance suite.
 */

import assert from "node:assert/strict";
import { Leadership, type LeaseTable } from "../../src/serve/lease.ts";

/** Leases in memory on a clock the test moves; `down` makes every call fail like a lost connection. */
function memoryTable(now: () => number) {
  const rows = new Map<string, { holder: string; until: number }>();
  const state = { down: false };
  const table: LeaseTable = {
    acquireLease(name, holder, ttlMs) {
      if (state.down) return Promise.reject(new Error("connection refused"));
      const row = rows.get(name);
      if (row && row.holder !== holder && row.until > now()) return Promise.resolve(false);
      rows.set(name, { holder, until: now() + ttlMs });
      return Promise.resolve(true);
    },
    releaseLease(name, holder) {
      if (rows.get(name)?.holder === holder) rows.delete(name);
      return Promise.resolve();
    },
  };
  return { table, rows, state };
}

Deno.test("lease: one leader; when it stops renewing, another takes over once the lease lapses", async () => {
  let t = 0;
  const now = () => t;
  const { table } = memoryTable(now);
  const changes: string[] = [];
  const make = (holder: string) =>
    new Leadership({
      table,
      name: "reconcile:vllm",
      holder,
      ttlMs: 300,
      now,
      onChange: (l) => changes.push(`${holder}:${l}`),
    });
  const a = make("a"), b = make("b"), c = make("c");
  assert.deepEqual([await a.renew(), await b.renew(), await c.renew()], [true, false, false]);
  t = 100;
  assert.deepEqual([await a.renew(), await b.renew(), await c.renew()], [true, false, false]);
  // a dies (stops renewing): its lease, renewed at 100, holds until 400.
  t = 399;
  assert.deepEqual([await b.renew(), await c.renew()], [false, false]);
  t = 400;
  assert.deepEqual([await b.renew(), await c.renew()], [true, false]);
  assert.deepEqual(changes, ["a:true", "b:true"]);
});

Deno.test("lease: a leader that cannot reach the database leads only until its last renewal lapses", async () => {
  let t = 0;
  const now = () => t;
  const { table, state } = memoryTable(now);
  const a = new Leadership({ table, name: "x", holder: "a", ttlMs: 300, now });
  const b = new Leadership({ table, name: "x", holder: "b", ttlMs: 300, now });
  assert.equal(await a.renew(), true);
  state.down = true;
  t = 200;
  assert.equal(await a.renew(), true, "still within the lease it renewed at 0");
  t = 300;
  assert.equal(await a.renew(), false, "its lease may have lapsed: it steps down");
  assert.equal(a.leader, false);
  state.down = false;
  assert.equal(await b.renew(), true, "the lease lapsed in the database too: b takes it");
  assert.equal(await a.renew(), false, "never two leaders");
});

Deno.test("lease: stop gives the lease up, so a follower takes over at once; the renewal loop keeps it", async () => {
  const { table, rows } = memoryTable(() => performance.now());
  const a = new Leadership({ table, name: "x", holder: "a", ttlMs: 90 });
  const b = new Leadership({ table, name: "x", holder: "b", ttlMs: 90 });
  a.start();
  await new Promise((r) => setTimeout(r, 250)); // several renewals: a's lease never lapsed
  assert.equal(a.leader, true);
  assert.equal(await b.renew(), false);
  await a.stop();
  assert.equal(rows.has("x"), false);
  assert.equal(await b.renew(), true);
  await b.stop();
  assert.throws(
    () => new Leadership({ table, name: "y", holder: "a", ttlMs: 0 }),
    /ttlMs must be positive, got 0/,
  );
});

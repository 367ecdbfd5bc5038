/**
 * One conformance suite for every store: SQLite (a temp file) and PostgreSQL (a throwaway cluster, tests/serve/pg.ts).
 * Each case gets a fresh database and may open several stores on it, as several sidecars would.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ArtifactTooLargeError,
  MAX_ARTIFACT_BYTES,
  MIGRATIONS,
  SCHEMA_VERSION,
  SqliteStore,
  type Store,
} from "../../src/serve/store/mod.ts";
import { PostgresStore } from "../../src/serve/store/postgres.ts";
import { PG_MISSING, TestPostgres } from "./pg.ts";
import { LEASE_CASES } from "./store_leases.ts";

/** A fresh, empty database, and how to open a store on it (each call another connection). */
interface Backend {
  readonly open: () => Promise<Store>;
  readonly dispose: () => Promise<void>;
}

interface Kind {
  readonly name: string;
  readonly ignore: boolean;
  readonly fresh: () => Promise<Backend>;
}

let cluster: Promise<TestPostgres> | null = null;
let databases = 0;

const KINDS: Kind[] = [
  {
    name: "sqlite",
    ignore: false,
    async fresh() {
      const dir = await Deno.makeTempDir({ prefix: "flexora-store-" });
      const file = join(dir, "jobs.sqlite");
      return {
        open: () => Promise.resolve(new SqliteStore(file)),
        dispose: () => Deno.remove(dir, { recursive: true }),
      };
    },
  },
  {
    name: `postgres${PG_MISSING ? ` (skipped: ${PG_MISSING})` : ""}`,
    ignore: PG_MISSING !== null,
    async fresh() {
      cluster ??= TestPostgres.start({ password: "conformance" });
      const url = await (await cluster).database(`conformance_${++databases}`);
      return { open: () => PostgresStore.open(url), dispose: () => Promise.resolve() };
    },
  },
];

/** Runs `body` on each kind of store with a fresh database; every store it opens is closed after. */
function conformance(title: string, body: (open: () => Promise<Store>) => Promise<void>) {
  for (const kind of KINDS) {
    Deno.test({
      name: `${kind.name}: ${title}`,
      ignore: kind.ignore,
      async fn() {
        const backend = await kind.fresh();
        const opened: Store[] = [];
        try {
          await body(async () => {
            const store = await backend.open();
            opened.push(store);
            return store;
          });
        } finally {
          for (const s of opened) await s.close();
          await backend.dispose();
        }
      },
    });
  }
}

const request = (name: string) => ({ model: "/m", data: "/d", name, options: {} });

conformance("jobs: create, get, list by state, update, counts; credentials never stored", async (open) => {
  const store = await open();
  for (const id of ["a", "b", "c"]) await store.create(id, request(id));
  assert.deepEqual((await store.list()).map((j) => [j.id, j.state, j.retries]), [
    ["a", "queued", 0],
    ["b", "queued", 0],
    ["c", "queued", 0],
  ]);
  const updated = await store.update("b", {
    state: "failed",
    progress: { stage: "search", step: 3 },
    result: { attach: { url: "http://admin:hunter2@10.0.0.1:8000" } },
    error: { code: "attach_failed", message: "http://admin:hunter2@10.0.0.1:8000 refused" },
    retries: 2,
  });
  assert.equal(updated.state, "failed");
  assert.deepEqual(updated.progress, { stage: "search", step: 3 });
  assert.deepEqual(updated.result, { attach: { url: "http://***@10.0.0.1:8000" } });
  assert.deepEqual(updated.error, { code: "attach_failed", message: "http://***@10.0.0.1:8000 refused" });
  assert.equal(updated.retries, 2);
  assert.ok(updated.updatedAt >= updated.createdAt);
  assert.deepEqual(await store.get("b"), updated);
  assert.equal(await store.get("nope"), null);
  assert.deepEqual((await store.list(["failed", "cancelled"])).map((j) => j.id), ["b"]);
  await store.update("b", { error: null });
  assert.equal((await store.get("b"))!.error, null, "a field set to null is cleared");
  assert.deepEqual(await store.counts(), { queued: 2, failed: 1 });
  await assert.rejects(() => store.create("a", request("again")), "an id is taken once");
  assert.equal((await store.get("a"))!.request.name, "a");
});

conformance("claim takes the oldest queued job once; none left is null", async (open) => {
  const store = await open();
  assert.equal(await store.claim(), null);
  await store.create("first", request("first"));
  await store.create("second", request("second"));
  await store.update("first", { state: "cancelled" });
  const claimed = await store.claim();
  assert.deepEqual([claimed?.id, claimed?.state], ["second", "starting"]);
  assert.equal(await store.claim(), null);
});

conformance("concurrent claims from several stores never take one job twice", async (open) => {
  const stores = await Promise.all([open(), open(), open()]);
  for (let i = 0; i < 30; i++) await stores[0].create(`job-${i}`, request(`n${i}`));
  const taken: string[][] = stores.map(() => []);
  // Every store claims as fast as it can, with several claims in flight at once, until the queue is empty.
  await Promise.all(stores.flatMap((store, s) =>
    [0, 1, 2].map(async () => {
      for (let job = await store.claim(); job; job = await store.claim()) taken[s].push(job.id);
    })
  ));
  const all = taken.flat().sort();
  assert.equal(all.length, 30, `each job once: ${all}`);
  assert.equal(new Set(all).size, 30);
  assert.equal((await stores[1].counts()).starting, 30);
});

conformance("history: pages by id, the last point, and a rewind to a checkpoint", async (open) => {
  const store = await open();
  await store.create("j", request("j"));
  await store.create("other", request("other"));
  for (let step = 1; step <= 4; step++) await store.addPoint("j", { stage: "search", step, loss: 4 - step });
  await store.addPoint("other", { stage: "search", step: 1, loss: 9 });
  for (let step = 1; step <= 6; step++) await store.addPoint("j", { stage: "retrain", step, loss: 1 });
  await store.addPoint("j", { stage: "evaluate", step: 3, valLoss: 2 });
  await store.addPoint("j", { stage: "evaluate", step: 6, valLoss: 1.5 });
  const all = await store.history("j");
  assert.equal(all.length, 12);
  assert.deepEqual(all[0], { id: all[0].id, stage: "search", step: 1, loss: 3 });
  const first = await store.history("j", 0, 5), next = await store.history("j", first.at(-1)!.id, 5);
  assert.deepEqual([...first, ...next, ...await store.history("j", next.at(-1)!.id, 5)], all);
  assert.equal(await store.lastPoint("j"), all.at(-1)!.id);
  assert.equal(await store.lastPoint("none"), 0);
  // The retraining resumes at step 3: its later steps and evaluations go; the search stays.
  assert.equal(await store.rewindHistory("j", "retrain", 3), 4);
  assert.deepEqual(
    (await store.history("j")).map((p) => `${p.stage}${p.step}`),
    ["search1", "search2", "search3", "search4", "retrain1", "retrain2", "retrain3", "evaluate3"],
  );
  assert.equal(await store.rewindHistory("j", "search", 2), 2);
  assert.equal((await store.history("other")).length, 1, "another job's history is untouched");
  const added = await store.addPoint("j", { stage: "search", step: 3, loss: 1 });
  assert.ok(added.id > all.at(-1)!.id, "ids only grow");
});

const sql = { server: "vllm", name: "sql", adapter: "sql", version: "job-1", path: "/a/sql/job-1", rank: 8 };

conformance("desired attachments: attach replaces, detach leaves a tombstone, list sorts", async (open) => {
  const [one, two] = await Promise.all([open(), open()]);
  assert.equal(await one.desired.attach(sql), null);
  const replaced = await one.desired.attach({ ...sql, version: "job-2", path: "/a/sql/job-2" });
  assert.deepEqual({ ...replaced, updatedAt: "" }, { ...sql, state: "attached", updatedAt: "" });
  await one.desired.attach({ ...sql, server: "sglang", name: "B" });
  await one.desired.attach({ ...sql, server: "sglang", name: "a" });
  assert.equal((await one.desired.detach("sglang", "a"))?.state, "attached");
  const rows = await two.desired.list();
  assert.deepEqual(
    rows.map((r) => [r.server, r.name, r.state, r.state === "attached" ? r.version : null]),
    [["sglang", "B", "attached", "job-1"], ["sglang", "a", "detached", null], [
      "vllm",
      "sql",
      "attached",
      "job-2",
    ]],
    "another connection sees every row, ordered by server and name (byte order)",
  );
  assert.deepEqual((await two.desired.list("vllm")).map((r) => r.name), ["sql"]);
});

conformance(
  "restore puts back what an attach or detach replaced; forget drops only its tombstone",
  async (open) => {
    const store = (await open()).desired;
    const previous = await store.attach(sql);
    const replaced = await store.attach({ ...sql, version: "job-2" });
    await store.restore("vllm", "sql", replaced);
    assert.equal((await store.get("vllm", "sql") as { version: string }).version, "job-1");
    await store.restore("vllm", "sql", previous);
    assert.equal(await store.get("vllm", "sql"), null);
    await store.attach(sql);
    await store.detach("vllm", "sql");
    const tombstone = (await store.get("vllm", "sql"))!;
    await store.forget("vllm", "sql", "1970-01-01T00:00:00.000Z");
    assert.equal((await store.get("vllm", "sql"))?.state, "detached", "another tombstone's time");
    await store.attach(sql);
    await store.forget("vllm", "sql", tombstone.updatedAt);
    assert.equal((await store.get("vllm", "sql"))?.state, "attached", "an attachment is never forgotten");
    await store.detach("vllm", "sql");
    await store.forget("vllm", "sql", (await store.get("vllm", "sql"))!.updatedAt);
    assert.equal(await store.get("vllm", "sql"), null);
  },
);

conformance(
  "artifacts: bytes round trip, a put replaces every file, keys, delete, the size limit",
  async (open) => {
    const [one, two] = await Promise.all([open(), open()]);
    const bytes = Uint8Array.from({ length: 256 * 4 }, (_, i) => i % 256);
    const files = new Map([["adapter_model.safetensors", bytes], [
      "nested/flexora.json",
      new Uint8Array([123, 125]),
    ]]);
    await one.artifacts.put("adapter", "sql/job-1", files);
    await one.artifacts.put(
      "checkpoint",
      "job-1",
      new Map([["search/state.safetensors", bytes.slice(0, 7)]]),
    );
    assert.deepEqual(await two.artifacts.get("adapter", "sql/job-1"), files);
    const [info] = await two.artifacts.list("adapter");
    assert.deepEqual({ ...info, updatedAt: "" }, { key: "sql/job-1", bytes: 256 * 4 + 2, updatedAt: "" });
    assert.ok(Date.parse(info.updatedAt) > Date.now() - 60_000, info.updatedAt);
    assert.deepEqual((await two.artifacts.list("checkpoint")).map((a) => a.key), ["job-1"]);
    await one.artifacts.put(
      "checkpoint",
      "job-1",
      new Map([["retrain/state.safetensors", bytes.slice(0, 3)]]),
    );
    assert.deepEqual(
      [...(await two.artifacts.get("checkpoint", "job-1"))!.keys()],
      ["retrain/state.safetensors"],
      "the search stage's file is gone: a put replaces the artifact",
    );
    assert.equal(await two.artifacts.get("checkpoint", "job-2"), null);
    await two.artifacts.delete("checkpoint", "job-1");
    assert.equal(await one.artifacts.get("checkpoint", "job-1"), null);
    // Five views of one 64 MiB buffer: over the limit without allocating it.
    const buffer = new ArrayBuffer(64 << 20);
    const big = new Map([0, 1, 2, 3, 4].map((i) => [`part${i}`, new Uint8Array(buffer)]));
    await assert.rejects(
      () => one.artifacts.put("checkpoint", "huge", big),
      (e) =>
        e instanceof ArtifactTooLargeError && e.message.includes(`'huge' is ${5 * (64 << 20)} bytes`) &&
        e.message.includes(String(MAX_ARTIFACT_BYTES)),
    );
    assert.equal(await one.artifacts.get("checkpoint", "huge"), null, "nothing written");
  },
);

conformance(
  "migrations: a fresh database opened by two stores at once is migrated once; reopening is a no-op",
  async (open) => {
    const [one, two] = await Promise.all([open(), open()]);
    assert.equal(await one.schemaVersion(), SCHEMA_VERSION);
    assert.equal(await two.schemaVersion(), SCHEMA_VERSION);
    await one.create("kept", request("kept"));
    await one.close();
    const again = await open();
    assert.equal(await again.schemaVersion(), SCHEMA_VERSION);
    assert.equal((await again.get("kept"))?.id, "kept");
    assert.equal(MIGRATIONS.map((m) => m.version).join(), MIGRATIONS.map((_, i) => i + 1).join());
  },
);

for (const [title, run] of Object.entries(LEASE_CASES)) {
  conformance(`leases: ${title}`, async (open) => await run(await open()));
}

Deno.test({
  name: "postgres: the cluster is removed",
  ignore: PG_MISSING !== null,
  async fn() {
    if (cluster) await (await cluster).close();
  },
});

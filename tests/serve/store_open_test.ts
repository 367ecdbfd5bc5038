/**
 * Opening a store: the URL forms and their errors, the data dir default, a SQLite file from before versioned
 * migrations, a schema newer than this build; on PostgreSQL a refused login, an unreachable or missing database
 * (each a clear error naming the URL at start), and queries that wait out a database restart.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  openStore,
  parseStoreUrl,
  PostgresStore,
  SCHEMA_VERSION,
  SchemaTooNewError,
  SqliteStore,
  StoreOpenError,
  StoreUrlError,
} from "../../src/serve/store/mod.ts";
import { PG_MISSING, TestPostgres } from "./pg.ts";

Deno.test("store URLs: sqlite:PATH and postgres://… parse; anything else is an error quoting it, password hidden", () => {
  assert.deepEqual(parseStoreUrl("sqlite:/var/flexora/jobs.sqlite"), {
    kind: "sqlite",
    file: "/var/flexora/jobs.sqlite",
  });
  assert.deepEqual(parseStoreUrl("sqlite:rel.sqlite"), {
    kind: "sqlite",
    file: join(Deno.cwd(), "rel.sqlite"),
  });
  assert.equal(parseStoreUrl("postgresql://u@db:5433/jobs").kind, "postgres");
  const cases: [string, RegExp][] = [
    [
      "mysql://root:pw@db/jobs",
      /^the store URL 'mysql:\/\/\*\*\*@db\/jobs' is neither sqlite:PATH nor postgres:/,
    ],
    ["sqlite:", /'sqlite:' names no file/],
    ["postgres:///jobs", /'postgres:\/\/\/jobs' names no host/],
    ["postgres://u:secret@/jobs", /'postgres:\/\/\*\*\*@\/jobs' is not a valid URL/],
    ["postgres://u:secret@db:5432", /names no database/],
    ["postgres://u:secret@db:99999/jobs", /is not a valid URL/],
    ["jobs.sqlite", /'jobs\.sqlite' is neither/],
  ];
  for (const [url, message] of cases) {
    assert.throws(
      () => parseStoreUrl(url),
      (e) => e instanceof StoreUrlError && message.test(e.message) && !e.message.includes("secret"),
      url,
    );
  }
});

Deno.test("no store URL: jobs.sqlite in the data dir, as before; sqlite:PATH names another file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-open-" });
  try {
    const store = await openStore(undefined, dir);
    assert.equal(store.url, `sqlite:${join(dir, "jobs.sqlite")}`);
    await store.create("j", {});
    await store.close();
    const other = await openStore(`sqlite:${join(dir, "other.sqlite")}`, "/nonexistent");
    assert.equal(await other.get("j"), null);
    await other.close();
    await Deno.stat(join(dir, "other.sqlite"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a SQLite store from before versioned migrations is adopted in place: its jobs kept, the retries column added", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-legacy-" });
  const file = join(dir, "jobs.sqlite");
  try {
    const db = new DatabaseSync(file);
    db.exec(
      `CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, state TEXT NOT NULL,
      request TEXT NOT NULL, progress TEXT, result TEXT, error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
      INSERT INTO jobs (id, state, request, created_at, updated_at) VALUES ('old', 'succeeded', '{}', 't', 't');`,
    );
    db.close();
    const store = new SqliteStore(file);
    assert.equal(await store.schemaVersion(), SCHEMA_VERSION);
    assert.deepEqual([(await store.get("old"))?.state, (await store.get("old"))?.retries], ["succeeded", 0]);
    await store.artifacts.put("adapter", "a/old", new Map([["f", new Uint8Array([1])]]));
    await store.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a store at a newer schema than this build is refused, naming both versions", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-newer-" });
  const file = join(dir, "jobs.sqlite");
  try {
    await new SqliteStore(file).close();
    const db = new DatabaseSync(file);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    assert.throws(
      () => new SqliteStore(file),
      (e) =>
        e instanceof SchemaTooNewError &&
        e.message ===
          `the store ${file} is at schema version ${SCHEMA_VERSION + 1}; this flexora knows up to ` +
            `${SCHEMA_VERSION}: upgrade flexora`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const pgTest = (name: string, fn: (pg: TestPostgres) => Promise<void>) =>
  Deno.test({
    name: `postgres: ${name}${PG_MISSING ? ` (skipped: ${PG_MISSING})` : ""}`,
    ignore: PG_MISSING !== null,
    async fn() {
      const pg = await TestPostgres.start({ password: "right" });
      try {
        await fn(pg);
      } finally {
        await pg.close();
      }
    },
  });

pgTest(
  "a refused login, a missing database and an unreachable server are clear errors at start",
  async (pg) => {
    const wrong = pg.url("flexora", "wrong");
    await assert.rejects(
      () => openStore(wrong, "/unused"),
      (e) =>
        e instanceof StoreOpenError &&
        e.message.startsWith(`cannot open the store postgres://***@127.0.0.1:${pg.port}/flexora: `) &&
        e.message.includes("the database refused the login (password authentication failed") &&
        !e.message.includes("wrong"),
    );
    await assert.rejects(
      () => PostgresStore.open(pg.url("missing")),
      (e) => e instanceof StoreOpenError && /\/missing: the database does not exist/.test(e.message),
    );
    // A port nothing listens on: the one this cluster had, once it is stopped.
    await pg.stop();
    await assert.rejects(
      () => PostgresStore.open(pg.url(), { retryMs: 0 }),
      (e) => e instanceof StoreOpenError && /: the database is unreachable \(ECONNREFUSED/.test(e.message),
    );
  },
);

pgTest("a database restarted under a store: queries wait for it and go on, nothing lost", async (pg) => {
  const store = await PostgresStore.open(pg.url(), { retryMs: 30_000 });
  try {
    await store.create("before", {});
    await pg.stop();
    // Issued while the database is down; it comes back a moment later.
    const written = store.create("during", {});
    await new Promise((r) => setTimeout(r, 500));
    await pg.restart();
    assert.equal((await written).id, "during");
    assert.deepEqual((await store.list()).map((j) => j.id), ["before", "during"]);
  } finally {
    await store.close();
  }
});

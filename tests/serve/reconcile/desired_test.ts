/** The desired table: rows survive a restart, tombstones replace attachments, restore undoes, forget is exact. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { SqliteStore } from "../../../src/serve/store/mod.ts";

const sql = { server: "vllm", name: "sql", adapter: "sql", version: "job-1", path: "/a/sql/job-1", rank: 8 };

Deno.test("desired rows live in the sidecar's SQLite file beside the jobs and survive a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-desired-" });
  try {
    const file = join(dir, "jobs.sqlite");
    const db = new SqliteStore(file), first = db.desired;
    await db.create("job-1", { name: "sql" });
    assert.equal(await first.attach(sql), null);
    assert.equal((await first.attach({ ...sql, version: "job-2", path: "/a/sql/job-2" }))?.state, "attached");
    await first.attach({ ...sql, server: "sglang" });
    await first.detach("sglang", "sql");
    await db.close();

    const reopened = new SqliteStore(file), again = reopened.desired;
    const rows = await again.list();
    assert.deepEqual(
      rows.map((r) => [r.server, r.name, r.state, r.state === "attached" ? r.version : null]),
      [
        ["sglang", "sql", "detached", null],
        ["vllm", "sql", "attached", "job-2"],
      ],
    );
    assert.deepEqual((await again.list("vllm")).map((r) => r.server), ["vllm"]);
    assert.equal((await reopened.get("job-1"))?.id, "job-1", "the jobs table is untouched");
    await reopened.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore puts back what an attach or detach replaced; forget drops only the tombstone it was given", async () => {
  const db = new SqliteStore(":memory:"), store = db.desired;
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
  await db.close();
});

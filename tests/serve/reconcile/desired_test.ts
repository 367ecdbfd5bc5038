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

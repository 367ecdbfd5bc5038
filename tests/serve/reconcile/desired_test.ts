/** The desired table: rows survive a restart, tombstones replace attachments, restore undoes, forget is exact. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DesiredStore } from "../../../src/serve/reconcile/mod.ts";
import { JobStore } from "../../../src/serve/store.ts";

const sql = { server: "vllm", name: "sql", adapter: "sql", version: "job-1", path: "/a/sql/job-1", rank: 8 };

Deno.test("desired rows live in the sidecar's SQLite file beside the jobs and survive a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-desired-" });
  try {
    const file = join(dir, "jobs.sqlite");
    const jobs = new JobStore(file);
    const first = new DesiredStore(file);
    jobs.create("job-1", { name: "sql" });
    assert.equal(first.attach(sql), null);
    assert.equal(first.attach({ ...sql, version: "job-2", path: "/a/sql/job-2" })?.state, "attached");
    first.attach({ ...sql, server: "sglang" });
    first.detach("sglang", "sql");
    first.close();
    jobs.close();

    const again = new DesiredStore(file);
    const rows = again.list();
    assert.deepEqual(
      rows.map((r) => [r.server, r.name, r.state, r.state === "attached" ? r.version : null]),
      [
        ["sglang", "sql", "detached", null],
        ["vllm", "sql", "attached", "job-2"],
      ],
    );
    assert.deepEqual(again.list("vllm").map((r) => r.server), ["vllm"]);
    again.close();
    const reopened = new JobStore(file);
    assert.equal(reopened.get("job-1")?.id, "job-1", "the jobs table is untouched");
    reopened.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore puts back what an attach or detach replaced; forget drops only the tombstone it was given", () => {
  const store = new DesiredStore(":memory:");
  const previous = store.attach(sql);
  const replaced = store.attach({ ...sql, version: "job-2" });
  store.restore("vllm", "sql", replaced);
  assert.equal((store.get("vllm", "sql") as { version: string }).version, "job-1");
  store.restore("vllm", "sql", previous);
  assert.equal(store.get("vllm", "sql"), null);

  store.attach(sql);
  store.detach("vllm", "sql");
  const tombstone = store.get("vllm", "sql")!;
  store.forget("vllm", "sql", "1970-01-01T00:00:00.000Z");
  assert.equal(store.get("vllm", "sql")?.state, "detached", "another tombstone's time");
  store.attach(sql);
  store.forget("vllm", "sql", tombstone.updatedAt);
  assert.equal(store.get("vllm", "sql")?.state, "attached", "an attachment is never forgotten");
  store.detach("vllm", "sql");
  store.forget("vllm", "sql", store.get("vllm", "sql")!.updatedAt);
  assert.equal(store.get("vllm", "sql"), null);
  store.close();
});

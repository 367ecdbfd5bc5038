/**
 * The job manager's worker: one runner per job, one at a time, under concurrent submissions; cancel that ends a
 * stuck runner (a fake one that ignores the stop and SIGTERM, and a real one blocked in I/O).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Spawn } from "../../src/serve/spawn.ts";
import { ROOT } from "../model/shared.ts";
import { fakeRunner, fakeSpawn, testSidecar, waitFor } from "./helpers.ts";
import { withManager } from "./lifecycle_shared.ts";

Deno.test("12 concurrent submissions on an idle sidecar: each job gets exactly one runner, one at a time, and succeeds", async () => {
  // The race needed awaits between picking a queued job and marking it running; 1 round in 3 showed it over
  // HTTP, and it shows at once in-process, so 10 rounds catch any regression.
  for (let round = 0; round < 10; round++) {
    const spawned = new Map<string, number>();
    let live = 0, most = 0;
    const inner = fakeSpawn();
    const spawn: Spawn = (file, options) => {
      const id = file.split("/").at(-2)!;
      spawned.set(id, (spawned.get(id) ?? 0) + 1);
      most = Math.max(most, ++live);
      const handle = inner(file, options);
      return { ...handle, exited: handle.exited.finally(() => live--) };
    };
    const s = await testSidecar({ spawn });
    try {
      const answers = await Promise.all(
        Array.from(
          { length: 12 },
          () => s.request("/v1/jobs", { method: "POST", body: s.body({ name: "race" }) }),
        ),
      );
      const ids: string[] = [];
      for (const res of answers) {
        assert.equal(res.status, 202);
        ids.push((await res.json()).id);
      }
      for (const id of ids) assert.equal((await waitFor(s.request, id)).state, "succeeded", `round ${round}`);
      assert.deepEqual([...spawned.values()], ids.map(() => 1), `round ${round}: one runner per job`);
      assert.deepEqual([...spawned.keys()].sort(), [...ids].sort());
      assert.equal(most, 1, `round ${round}: one runner at a time`);
    } finally {
      await s.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  }
});

Deno.test("cancel ends a runner that ignores the stop and SIGTERM: SIGKILL after the grace period, the job is cancelled and the next one runs", async () => {
  const kills: string[] = [];
  let calls = 0;
  const stuck = fakeRunner(async function* () {
    yield { type: "start", stage: "search", step: 0, total: 9, seconds: 0 };
    await new Promise(() => {}); // blocked on I/O: never reads the stop, never ends by itself
  }, { kills, ignoreTerm: true });
  const s = await testSidecar({
    spawn: (f, o) => (calls++ === 0 ? stuck : fakeSpawn())(f, o),
    stopGraceMs: 50,
  });
  try {
    const first = (await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json()).id;
    const second = (await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json()).id;
    await waitFor(s.request, first, ["searching"]);
    assert.equal((await s.request(`/v1/jobs/${first}/cancel`, { method: "POST" })).status, 200);
    assert.equal((await waitFor(s.request, first)).state, "cancelled");
    assert.deepEqual(kills, ["SIGTERM", "SIGKILL"]);
    assert.equal((await waitFor(s.request, second)).state, "succeeded", "the slot was freed");
  } finally {
    await s.close();
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("cancel ends a real runner blocked in I/O (its model's config.json a FIFO): it is killed after the grace period and the job is cancelled", async () => {
  // Submits refuse FIFOs now; a file can still block (a hung network mount), and cancel must end that runner.
  const dir = await Deno.makeTempDir({ prefix: "flexora-fifo-" });
  const model = join(dir, "model");
  await Deno.mkdir(model);
  for await (const f of Deno.readDir(join(ROOT, "fixtures/tiny-llama"))) {
    if (f.isFile && f.name !== "config.json") {
      await Deno.copyFile(join(ROOT, "fixtures/tiny-llama", f.name), join(model, f.name));
    }
  }
  assert.equal((await new Deno.Command("mkfifo", { args: [join(model, "config.json")] }).output()).code, 0);
  await withManager(dir, { stopGraceMs: 300 }, async (manager) => {
    const job = await manager.submit({
      model,
      data: join(ROOT, "fixtures/tiny-data"),
      name: "fifo",
      options: {},
    });
    await new Promise((r) => setTimeout(r, 3000)); // the runner starts, then waits on the FIFO
    assert.equal((await manager.get(job.id)).state, "starting");
    await manager.cancel(job.id);
    await manager.idle;
    assert.equal((await manager.get(job.id)).state, "cancelled");
  });
});

import assert from "node:assert/strict";
import type { Spawn } from "../../src/serve/jobs.ts";
import { fakeSpawn, testSidecar, waitFor } from "./helpers.ts";

Deno.test("12 concurrent submissions on an idle sidecar: each job gets exactly one runner, one at a time, and succeeds", async () => {
  // The race needed awaits between picking a queued job and marking it running; 1 round in 3 showed it over
  // HTTP, and it shows at once in-process, so 10 rounds catch any regression.
  for (let round = 0; round < 10; round++) {
    const spawned = new Map<string, number>();
    let live = 0, most = 0;
    const inner = fakeSpawn();
    const spawn: Spawn = (file) => {
      const id = file.split("/").at(-2)!;
      spawned.set(id, (spawned.get(id) ?? 0) + 1);
      most = Math.max(most, ++live);
      const handle = inner(file);
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

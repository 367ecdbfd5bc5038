/**
 * A sidecar on a shared (PostgreSQL) store keeps each job's checkpoints and its finished adapter in the store: a
 * sidecar on another host (another data dir) resumes the job from the stored checkpoint and serves the adapter.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { RunnerSpec } from "../../src/serve/protocol.ts";
import { PostgresStore } from "../../src/serve/store/mod.ts";
import { fakeRunner, progress, type TestSidecar, testSidecar, waitFor } from "./helpers.ts";
import { PG_MISSING, TestPostgres } from "./pg.ts";
import { writeFlexoraJson } from "../flexora/report_fixture.ts";

/** Writes a search checkpoint as the runner would: the stage folder with its manifest and state. */
async function writeCheckpoint(spec: RunnerSpec, step: number, state: Uint8Array) {
  const dir = join(spec.checkpointDir, "search");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(join(dir, "state.safetensors"), state);
  await Deno.writeTextFile(
    join(dir, "checkpoint.json"),
    JSON.stringify({ stage: "search", step, seconds: step }),
  );
}

/**
 * A runner that checkpoints search step 1 and then waits to be stopped (`hold`), or, resumed, checks it was given
 * that checkpoint and finishes.
 */
function script(seen: { specs: RunnerSpec[]; resumedFrom: string | null }) {
  return fakeRunner(async function* (spec, stopped) {
    seen.specs.push(spec);
    if (!spec.resume) {
      yield { type: "start", stage: "search", step: 0, total: 2, seconds: 0 };
      yield { type: "progress", event: progress("search", 1, 2, { loss: 2.5 }) };
      await writeCheckpoint(spec, 1, new Uint8Array([1, 2, 3, 4]));
      yield { type: "checkpoint", stage: "search", step: 1 };
      await stopped;
      return yield { type: "stopped", message: "search stopped at step 1 of 2" };
    }
    const manifest = JSON.parse(
      await Deno.readTextFile(join(spec.checkpointDir, "search", "checkpoint.json")),
    );
    const state = await Deno.readFile(join(spec.checkpointDir, "search", "state.safetensors"));
    seen.resumedFrom = `step ${manifest.step}, state ${state.join(",")}`;
    yield { type: "start", stage: "search", step: 1, total: 2, seconds: 1 };
    yield { type: "progress", event: progress("search", 2, 2, { loss: 2.4 }) };
    await Deno.mkdir(spec.out, { recursive: true });
    await Deno.writeTextFile(
      join(spec.out, "adapter_config.json"),
      JSON.stringify({ peft_type: "LORA", r: 8 }),
    );
    await writeFlexoraJson(spec.out, { method: "flexora", selectedLayers: [0] });
    yield {
      type: "result",
      summary: { method: "flexora", adapter: spec.out, selectedLayers: [0], trainableParams: 1, timings: {} },
    };
  });
}

Deno.test({
  name: `a job checkpointed on one host resumes on another from the store, and every host serves its adapter${
    PG_MISSING ? ` (skipped: ${PG_MISSING})` : ""
  }`,
  ignore: PG_MISSING !== null,
  async fn() {
    const pg = await TestPostgres.start();
    const sidecars: TestSidecar[] = [];
    const seen = { specs: [] as RunnerSpec[], resumedFrom: null as string | null };
    try {
      const a = await testSidecar({ store: pg.url(), spawn: script(seen) });
      sidecars.push(a);
      const { id } = await (await a.request("/v1/jobs", { method: "POST", body: a.body({ name: "sql" }) }))
        .json();
      const store = await PostgresStore.open(pg.url());
      try {
        for (let i = 0; i < 500 && !(await store.artifacts.get("checkpoint", id)); i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        const stored = await store.artifacts.get("checkpoint", id);
        assert.deepEqual([...stored?.keys() ?? []], ["search/checkpoint.json", "search/state.safetensors"]);
        await a.close(); // host A goes: the job is interrupted, its checkpoint in the store
        assert.equal((await store.get(id))?.state, "interrupted");

        // Host B: another data dir, the same database.
        const b = await testSidecar({ store: pg.url(), spawn: script(seen) });
        sidecars.push(b);
        if ((await store.get(id))?.state === "interrupted") {
          assert.equal((await b.request(`/v1/jobs/${id}/resume`, { method: "POST" })).status, 200);
        }
        const done = await waitFor(b.request, id);
        assert.equal(done.state, "succeeded", JSON.stringify(done.error));
        assert.notEqual(
          seen.specs.at(-1)!.checkpointDir,
          seen.specs[0].checkpointDir,
          "another host's folder",
        );
        assert.equal(seen.resumedFrom, "step 1, state 1,2,3,4");
        assert.equal(
          await store.artifacts.get("checkpoint", id),
          null,
          "a finished job's checkpoints are dropped",
        );
        assert.deepEqual((await store.artifacts.list("adapter")).map((x) => x.key), [`sql/${id}`]);

        // A third host, which never ran the job, lists the adapter and can attach it.
        const c = await testSidecar({ store: pg.url(), spawn: script(seen) });
        sidecars.push(c);
        const { adapters } = await (await c.request("/v1/adapters")).json();
        assert.deepEqual(adapters.map((x: { name: string; version: string }) => [x.name, x.version]), [[
          "sql",
          id,
        ]]);
        assert.equal(
          await Deno.readTextFile(join(adapters[0].path, "adapter_config.json")),
          JSON.stringify({ peft_type: "LORA", r: 8 }),
        );
      } finally {
        await store.close();
      }
    } finally {
      for (const s of sidecars) {
        await s.close().catch(() => {});
        await Deno.remove(s.dir, { recursive: true });
      }
      await pg.close();
    }
  },
});

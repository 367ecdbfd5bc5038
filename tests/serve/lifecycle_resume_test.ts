/**
 * A job whose runner died: a runner killed by SIGKILL leaves its job interrupted and resumed automatically a
 * bounded number of times; a resumed job's stage and history; a real runner killed mid-search resumes from its
 * checkpoint.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type RunnerHandle, type Spawn, spawnRunner } from "../../src/serve/spawn.ts";
import type { RunnerSpec } from "../../src/serve/protocol.ts";
import { ROOT } from "../model/shared.ts";
import {
  crashedJobStore,
  fakeRunner,
  fakeSummary,
  progress,
  type TestSidecar,
  testSidecar,
  waitFor,
} from "./helpers.ts";
import { withManager } from "./lifecycle_shared.ts";

Deno.test("a runner killed by SIGKILL leaves its job interrupted with the reason, resumed automatically a bounded number of times, then by hand", async () => {
  const specs: RunnerSpec[] = [];
  const dying = fakeRunner(async function* (spec, _stopped, die) {
    specs.push(spec);
    yield { type: "start", stage: "search", step: 0, total: 9, seconds: 0 };
    await die("SIGKILL");
  });
  const s = await testSidecar({ spawn: dying, maxRetries: 2 });
  try {
    const { id } = await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json();
    const job = await waitFor(s.request, id, ["interrupted"]);
    assert.equal(specs.length, 3, "the first run and two retries");
    assert.deepEqual(specs.map((x) => x.resume), [false, true, true]);
    assert.equal(job.retries, 2);
    assert.deepEqual(job.error, {
      code: "runner_died",
      message:
        "the training process was killed by SIGKILL (the out-of-memory killer sends it); it was resumed 2 times already: resume it by hand",
    });
    const resumed = await s.request(`/v1/jobs/${id}/resume`, { method: "POST" });
    assert.equal(resumed.status, 200);
    const again = await resumed.json();
    assert.equal(again.retries, 0);
    await waitFor(s.request, id, ["interrupted"]);
    assert.equal(specs.length, 6);
  } finally {
    await s.close();
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("a resumed job reports the stage it resumes in, and its history is cut back to the checkpoint", async () => {
  const { dir, dataDir, store } = await crashedJobStore("flexora-rewind-");
  for (let step = 1; step <= 4; step++) await store.addPoint("crashed", { stage: "search", step, loss: 3 });
  for (let step = 1; step <= 8; step++) await store.addPoint("crashed", { stage: "retrain", step, loss: 2 });
  await store.addPoint("crashed", { stage: "evaluate", step: 4, valLoss: 2 });
  await store.addPoint("crashed", { stage: "evaluate", step: 8, valLoss: 2 });
  await store.update("crashed", { state: "retraining" });
  await store.close();
  let resumedAs: string | null = null;
  let s: TestSidecar | null = null;
  const spawn = fakeRunner(async function* (spec) {
    yield { type: "start", stage: "search", step: 4, total: 4, seconds: 12 };
    yield { type: "start", stage: "retrain", step: 5, total: 8, seconds: 30 };
    resumedAs = (await (await s!.request("/v1/jobs/crashed")).json()).state;
    yield { type: "progress", event: progress("retrain", 6, 8, { loss: 1.9 }) };
    await Deno.mkdir(spec.out, { recursive: true });
    await Deno.writeTextFile(join(spec.out, "adapter_config.json"), JSON.stringify({ r: 8 }));
    yield { type: "result", summary: fakeSummary(spec.out) };
  });
  s = await testSidecar({ dataDir, spawn });
  try {
    assert.equal((await waitFor(s.request, "crashed")).state, "succeeded");
    assert.equal(resumedAs, "retraining");
    const history = (await (await s.request("/v1/jobs/crashed/history")).json()).points;
    assert.deepEqual(history.map((p: { stage: string; step: number }) => `${p.stage} ${p.step}`), [
      "search 1",
      "search 2",
      "search 3",
      "search 4",
      "retrain 1",
      "retrain 2",
      "retrain 3",
      "retrain 4",
      "retrain 5",
      "evaluate 4",
      "retrain 6",
    ]);
  } finally {
    await s.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a real runner killed with SIGKILL mid-search: the job resumes from its checkpoint by itself, repeats no step in its history, and sums its timings", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-oom-" });
  // Real runners, kept so the test can SIGKILL one from outside as the OOM killer would.
  const runners: RunnerHandle[] = [];
  const spawn: Spawn = (file, options) => {
    const runner = spawnRunner(file, options);
    runners.push(runner);
    return runner;
  };
  await withManager(dir, { spawn }, async (manager) => {
    const job = await manager.submit({
      model: join(ROOT, "fixtures/tiny-llama"),
      data: join(ROOT, "fixtures/tiny-data"),
      name: "oom",
      options: { maxLength: 64, checkpointEvery: 2, search: { epochs: 3 }, retrain: { epochs: 1 } },
    });
    let atCheckpoint = 0;
    const reasons = new Set<string>();
    manager.subscribe(
      job.id,
      ({ job: j }) => void (j.error && reasons.add(j.error.message)),
    );
    const killed = new Promise<void>((resolve, reject) => {
      const unsubscribe = manager.subscribe(job.id, ({ job: j }) => {
        if (["succeeded", "failed", "interrupted", "cancelled"].includes(j.state)) {
          // Ended before the kill: fail with its reason rather than wait for a step that never comes.
          unsubscribe();
          reject(new Error(`the job ended ${j.state} before search step 5: ${JSON.stringify(j.error)}`));
        }
        const p = j.progress as { stage: string; step: number; elapsed: number } | null;
        if (p?.stage === "search" && p.step === 4) atCheckpoint = p.elapsed;
        if (p?.stage === "search" && p.step === 5) {
          unsubscribe();
          // As the OOM killer would: SIGKILL from outside, mid-search.
          runners.at(-1)!.kill("SIGKILL");
          resolve();
        }
      });
    });
    await killed;
    const deadline = Date.now() + 120_000;
    while (
      !["succeeded", "failed", "interrupted"].includes((await manager.get(job.id)).state) &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const done = await manager.get(job.id);
    assert.equal(done.state, "succeeded", JSON.stringify(done.error));
    assert.equal(done.retries, 1);
    assert.equal(done.error, null);
    assert.deepEqual([...reasons], [
      // Shown from the requeue until the resumed run ends well.
      "the training process was killed by SIGKILL (the out-of-memory killer sends it); resuming from its checkpoint (retry 1 of 2)",
    ]);
    const history = await manager.history(job.id, 0, -1);
    const search = history.filter((p) => p.stage === "search").map((p) => p.step);
    assert.deepEqual(
      search,
      [...Array(search.length).keys()].map((i) => i + 1),
      "each search step once, in order",
    );
    const timings = (done.result as { timings: { search: number } }).timings;
    assert.ok(
      timings.search > atCheckpoint,
      `search ${timings.search} s counts the ${atCheckpoint} s before the kill`,
    );
  });
});

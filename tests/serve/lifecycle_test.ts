/**
 * A job's life in the sidecar: one runner per job under concurrent submissions, cancel that ends a stuck runner,
 * a runner killed by SIGKILL, the event stream and the history route, a resumed job's stage and history, and an
 * attach that the reconcile loop completes later.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { JobManager } from "../../src/serve/jobs.ts";
import { type RunnerHandle, type Spawn, spawnRunner } from "../../src/serve/spawn.ts";
import type { RunnerSpec } from "../../src/serve/protocol.ts";
import { SqliteStore } from "../../src/serve/store/mod.ts";
import { ROOT } from "../model/shared.ts";
import {
  fakeRunner,
  fakeSpawn,
  fakeSummary,
  progress,
  type TestSidecar,
  testSidecar,
  waitFor,
} from "./helpers.ts";

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
  const store = new SqliteStore(":memory:");
  const manager = new JobManager({
    store,
    dataDir: dir,
    servers: [],
    attach: () => Promise.reject(new Error("no attach")),
    stopGraceMs: 300,
  });
  await manager.start();
  try {
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
  } finally {
    await manager.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

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

Deno.test("a subscriber that throws does not fail the job: the error is its own", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-subscriber-" });
  // The fake runner reads neither, but a sidecar claims only jobs whose model and data are on its host.
  await Deno.mkdir(join(dir, "m"));
  await Deno.mkdir(join(dir, "d"));
  const store = new SqliteStore(":memory:");
  const manager = new JobManager({
    store,
    dataDir: dir,
    servers: [],
    attach: () => Promise.reject(new Error("none")),
    spawn: fakeSpawn(),
  });
  await manager.start();
  const logged: string[] = [];
  const error = console.error;
  console.error = (...a: unknown[]) => void logged.push(a.join(" "));
  try {
    const job = await manager.submit({
      model: join(dir, "m"),
      data: join(dir, "d"),
      name: "loud",
      options: {},
    });
    manager.subscribe(job.id, () => {
      throw new Error("the client went away");
    });
    for (let i = 0; i < 500 && !["succeeded", "failed"].includes((await manager.get(job.id)).state); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(
      (await manager.get(job.id)).state,
      "succeeded",
      JSON.stringify((await manager.get(job.id)).error),
    );
    assert.ok(logged.some((l) => l.includes("a subscriber failed: the client went away")), logged.join("\n"));
  } finally {
    console.error = error;
    await manager.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SSE events carry the job and the new points only; a late subscriber gets a snapshot, and Last-Event-ID replays what it missed", async () => {
  let release: () => void = () => {};
  const hold = new Promise<void>((r) => (release = r));
  const s = await testSidecar({ spawn: fakeSpawn({ hold }) });
  try {
    const { id } = await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json();
    await waitFor(s.request, id, ["searching"]);
    const live = s.request(`/v1/jobs/${id}/events`).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 50));
    release();
    const events = parseSse(await live);
    // The snapshot: the job as it stands, no points (they are at /history); then one point per event at most.
    assert.equal(events[0].data.job.state, "searching");
    assert.deepEqual(events[0].data.points, []);
    assert.equal(events[0].data.job.result?.history, undefined);
    const points = events.flatMap((e) => e.data.points);
    assert.deepEqual(points.map((p: { stage: string; step: number }) => [p.stage, p.step]), [
      ["search", 2],
      ["retrain", 1],
    ]);
    assert.ok(events.every((e) => e.data.points.length <= 1));
    assert.equal(events.at(-1)!.data.job.state, "succeeded");
    const all = await (await s.request(`/v1/jobs/${id}/history?limit=1`)).json();
    assert.equal(all.points.length, 1);
    assert.equal(all.next, all.points[0].id);
    // Reconnecting after the first point: a snapshot with the two points after it, and the stream ends (final).
    const replay = parseSse(
      await (await s.request(`/v1/jobs/${id}/events`, { headers: { "last-event-id": String(all.next) } }))
        .text(),
    );
    assert.equal(replay.length, 1);
    assert.equal(replay[0].data.job.state, "succeeded");
    assert.deepEqual(replay[0].data.points.map((p: { step: number }) => p.step), [2, 1]);
    assert.equal(replay[0].id, String(replay[0].data.points[1].id));
  } finally {
    release();
    await s.close();
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("a resumed job reports the stage it resumes in, and its history is cut back to the checkpoint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-rewind-" });
  const dataDir = join(dir, "state");
  await Deno.mkdir(dataDir, { recursive: true });
  const store = new SqliteStore(join(dataDir, "jobs.sqlite"));
  await store.create("crashed", {
    model: join(dir, "models/m"),
    data: join(dir, "datasets/d"),
    name: "demo",
    options: {},
  });
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

Deno.test("a job that ended attach_failed follows the reconcile loop's later success", async () => {
  const s = await testSidecar({
    transientFailures: 1,
    reconcile: { intervalMs: 50, jitter: 0, maxBackoffMs: 50 },
  });
  try {
    const { id } = await (await s.request("/v1/jobs", {
      method: "POST",
      body: s.body({ attach: { server: "local" } }),
    })).json();
    const seen: string[] = [];
    s.manager.subscribe(
      id,
      ({ job }) => void seen.push(`${job.state}${job.error ? `: ${job.error.message}` : ""}`),
    );
    const job = await waitFor(s.request, id, ["succeeded"]);
    const failed = seen.findIndex((x) => x.startsWith("attach_failed"));
    assert.ok(failed >= 0, seen.join("\n"));
    assert.match(seen[failed], /503.*the sidecar retries every/);
    assert.equal(seen.at(-1), "succeeded");
    assert.equal(job.error, null);
    const attach = (job.result as { attach: { version: string; replicas: { ok: boolean }[] } }).attach;
    assert.equal(attach.version, id);
    assert.equal(attach.replicas[0].ok, true);
  } finally {
    await s.close();
    await Deno.remove(s.dir, { recursive: true });
  }
});

/** The events of an SSE body. */
// deno-lint-ignore no-explicit-any
function parseSse(text: string): { id: string | null; data: Record<string, any> }[] {
  return text.split("\n\n").filter((b) => b.includes("data:")).map((block) => {
    const lines = block.split("\n");
    return {
      id: lines.find((l) => l.startsWith("id:"))?.slice(3).trim() ?? null,
      data: JSON.parse(lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n")),
    };
  });
}

Deno.test("a real runner killed with SIGKILL mid-search: the job resumes from its checkpoint by itself, repeats no step in its history, and sums its timings", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-oom-" });
  const store = new SqliteStore(":memory:");
  // Real runners, kept so the test can SIGKILL one from outside as the OOM killer would.
  const runners: RunnerHandle[] = [];
  const spawn: Spawn = (file, options) => {
    const runner = spawnRunner(file, options);
    runners.push(runner);
    return runner;
  };
  const manager = new JobManager({
    store,
    dataDir: dir,
    servers: [],
    attach: () => Promise.reject(new Error("none")),
    spawn,
  });
  await manager.start();
  try {
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
  } finally {
    await manager.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A job's changes as its subscribers see them: a subscriber that throws, the event stream (SSE) and the history
 * route, and an attach that the reconcile loop completes later.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fakeSpawn, heldJob, testSidecar, waitFor } from "./helpers.ts";
import { withManager } from "./lifecycle_shared.ts";

Deno.test("a subscriber that throws does not fail the job: the error is its own", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-subscriber-" });
  // The fake runner reads neither, but a sidecar claims only jobs whose model and data are on its host.
  await Deno.mkdir(join(dir, "m"));
  await Deno.mkdir(join(dir, "d"));
  await withManager(dir, { spawn: fakeSpawn() }, async (manager) => {
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
      assert.ok(
        logged.some((l) => l.includes("a subscriber failed: the client went away")),
        logged.join("\n"),
      );
    } finally {
      console.error = error;
    }
  });
});

Deno.test("SSE events carry the job and the new points only; a late subscriber gets a snapshot, and Last-Event-ID replays what it missed", async () => {
  const { s, id, release } = await heldJob();
  try {
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

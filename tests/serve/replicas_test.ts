/**
 * Adapters as desired state against three replicas of the real embedded server on 127.0.0.1: a replica killed and
 * restarted empty gets the adapter back; a detach during an outage stays a detach; a retrained version rolls out
 * one replica at a time while a client keeps asking, and every answer comes from the old or the new version; a
 * replica whose verification fails keeps the old version.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { PLUGINS } from "../../plugins/mod.ts";
import { loadModel } from "../../src/model/model.ts";
import { createSidecar } from "../../src/serve/app.ts";
import type { RunnerHandle, Spawn } from "../../src/serve/spawn.ts";
import type { ReconcileEvent } from "../../src/serve/reconcile/mod.ts";
import { readSpec } from "../../src/serve/protocol.ts";
import { copyFixtures, fakeSummary, TOKEN, waitFor } from "./helpers.ts";
import { complete, expectedText, Replica, TINY, writeVersion } from "./replicas.ts";

const model = await loadModel(TINY);
const INTERVAL = 400, JITTER = 0.1;

interface Harness {
  readonly dir: string;
  readonly dataDir: string;
  readonly replicas: readonly Replica[];
  readonly events: readonly ReconcileEvent[];
  request(path: string, body?: unknown): Promise<Response>;
  /** The first event from now on that `match` accepts (10 s at most). */
  next(match: (e: ReconcileEvent) => boolean): Promise<ReconcileEvent>;
  /** `GET /v1/servers`' only server. */
  server(): Promise<Record<string, unknown> & { replicas: Record<string, unknown>[]; desired: unknown[] }>;
  metrics(): Promise<string>;
}

/** A runner that "retrains" by copying `source` to the job's output folder. */
function copying(source: () => string): Spawn {
  return (specFile): RunnerHandle => ({
    events: (async function* () {
      const spec = await readSpec(specFile);
      await Deno.mkdir(spec.out, { recursive: true });
      for await (const f of Deno.readDir(source())) {
        await Deno.copyFile(join(source(), f.name), join(spec.out, f.name));
      }
      yield {
        type: "result" as const,
        summary: { ...fakeSummary(spec.out, [0, 1, 2]), method: "lora" as const },
      };
    })(),
    stop: () => {},
    kill: () => {},
    exited: Promise.resolve({ code: 0, signal: null }),
  });
}

async function withDeployment(body: (h: Harness) => Promise<void>, spawn?: Spawn): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexora-replicas-" });
  await copyFixtures(dir);
  const replicas = [0, 1, 2].map(() => Replica.start(model));
  const events: ReconcileEvent[] = [];
  const sidecar = await createSidecar(
    {
      dataDir: join(dir, "state"),
      token: TOKEN,
      host: "127.0.0.1",
      modelRoots: [dir],
      dataRoots: [dir],
      servers: [{
        name: "tiny",
        kind: "embedded",
        url: replicas[0].url,
        replicas: replicas.map((r) => r.url),
      }],
      reconcile: { intervalMs: INTERVAL, jitter: JITTER, maxBackoffMs: 4 * INTERVAL },
    },
    PLUGINS,
    { spawn, call: { fetch, retries: 1, backoffMs: 20 }, onReconcile: (e) => events.push(e) },
  );
  const request = (path: string, json?: unknown) =>
    Promise.resolve(sidecar.app.request(path, {
      method: json === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: json === undefined ? undefined : JSON.stringify(json),
    }));
  const next = async (match: (e: ReconcileEvent) => boolean) => {
    const from = events.length, deadline = Date.now() + 10_000;
    for (;;) {
      const found = events.slice(from).find(match);
      if (found) return found;
      if (Date.now() > deadline) {
        throw new Error(`no such reconcile event; saw ${JSON.stringify(events.slice(from))}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  try {
    await body({
      dir,
      dataDir: join(dir, "state"),
      replicas,
      events,
      request,
      next,
      server: async () => (await (await request("/v1/servers")).json()).servers[0],
      metrics: async () => await (await request("/metrics")).text(),
    });
  } finally {
    await sidecar.close();
    for (const r of replicas) await r.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Attaches `name` (its newest version) to every replica and checks that each serves it. */
async function attachAll(h: Harness, text: string, name = "colors") {
  const res = await h.request(`/v1/adapters/${name}/attach`, { server: "tiny" });
  const report = await res.json();
  assert.equal(res.status, 200, JSON.stringify(report));
  assert.equal(report.complete, true);
  // The loop may reach a replica before the attach does: then the attach finds it there and verifies it.
  for (const [i, r] of report.replicas.entries()) {
    assert.deepEqual([r.url, r.ok, r.version], [h.replicas[i].url, true, report.version]);
    assert.ok(["attached", "unchanged"].includes(r.action), r.action);
    assert.equal(r.verification.changesOutput, true);
  }
  for (const r of h.replicas) assert.deepEqual(await complete(r.url, name), { status: 200, text });
  return report;
}

const loopOn = (r: Replica) => (e: ReconcileEvent) => e.url === r.url && e.trigger === "loop";
const colorsOutcome = (e: ReconcileEvent) => e.outcomes.find((o) => o.name === "colors");

Deno.test("a replica killed and restarted empty gets the adapter back, verified, within two intervals", async () => {
  await withDeployment(async (h) => {
    const v1 = await writeVersion(model, join(h.dataDir, "adapters", "colors", "v1"), 1);
    const old = await expectedText(model, v1);
    await attachAll(h, old);

    const victim = h.replicas[1];
    await victim.kill();
    const failed = await h.next((e) => loopOn(victim)(e) && e.error !== null);
    assert.equal(colorsOutcome(failed)?.transient, true);
    const down = (await h.server()).replicas[1];
    assert.equal(down.state, "failing");
    assert.equal(down.reachable, false);
    assert.equal(down.consecutiveFailures, 1);
    assert.match(String(down.lastError), /GET \/v1\/models/);
    assert.match(
      await h.metrics(),
      new RegExp(`^flexora_replica_up\\{server="tiny",replica="${victim.url}"\\} 0$`, "m"),
    );

    victim.restart();
    const restarted = Date.now();
    const repaired = await h.next((e) => loopOn(victim)(e) && colorsOutcome(e)?.action === "repaired");
    const waited = repaired.startedAt - restarted;
    assert.ok(
      waited <= 2 * INTERVAL * (1 + JITTER),
      `the pass that repaired it started ${waited} ms after the restart`,
    );
    const outcome = colorsOutcome(repaired)!;
    assert.deepEqual([outcome.ok, outcome.version], [true, "v1"]);
    assert.deepEqual([outcome.verification?.listed, outcome.verification?.changesOutput], [true, true]);
    assert.deepEqual(await complete(victim.url, "colors"), { status: 200, text: old });

    const back = (await h.server()).replicas[1];
    assert.deepEqual([back.state, back.consecutiveFailures, back.lastError], ["ok", 0, null]);
    assert.deepEqual((back.adapters as { name: string; version: string }[]).map((a) => [a.name, a.version]), [
      ["colors", "v1"],
    ]);
    const metrics = await h.metrics();
    assert.match(
      metrics,
      new RegExp(`^flexora_replica_up\\{server="tiny",replica="${victim.url}"\\} 1$`, "m"),
    );
    assert.match(
      metrics,
      new RegExp(
        `^flexora_reconcile_total\\{server="tiny",replica="${victim.url}",what="repaired"\\} 1$`,
        "m",
      ),
    );
  });
});

Deno.test("a detach during an outage: the adapter never comes back, and the replica that missed it is cleaned", async () => {
  await withDeployment(async (h) => {
    const v1 = await writeVersion(model, join(h.dataDir, "adapters", "colors", "v1"), 1);
    await attachAll(h, await expectedText(model, v1));
    // Another adapter stays attached throughout, so the loop keeps passing over every replica.
    const other = await writeVersion(model, join(h.dataDir, "adapters", "other", "v1"), 3);
    await attachAll(h, await expectedText(model, other), "other");
    const [up, killed, partitioned] = h.replicas;
    await killed.kill();
    partitioned.partitioned = true; // unreachable, but keeps its adapters

    const res = await h.request("/v1/adapters/colors/detach", { server: "tiny" });
    const report = await res.json();
    assert.equal(res.status, 200, JSON.stringify(report));
    assert.equal(report.complete, false);
    assert.deepEqual(
      report.replicas.map((r: { action: string; transient?: boolean }) => [r.action, r.transient ?? null]),
      [["detached", null], ["failed", true], ["failed", true]],
    );
    assert.deepEqual(await up.names(), ["other"]);
    const desired = (await h.server()).desired as { name: string; state: string }[];
    assert.deepEqual(desired.map((d) => [d.name, d.state]), [["colors", "detached"], ["other", "attached"]]);
    const detachedAt = h.events.length;

    killed.restart();
    partitioned.partitioned = false;
    assert.deepEqual(await partitioned.names(), ["colors", "other"], "it missed the detach");
    const cleaned = await h.next((e) => loopOn(partitioned)(e) && colorsOutcome(e)?.action === "detached");
    assert.equal(cleaned.error, null);
    // Two more passes on each replica: nothing attaches it again.
    for (const r of h.replicas) {
      await h.next((e) => loopOn(r)(e) && e.error === null);
      await h.next((e) => loopOn(r)(e) && e.error === null);
    }
    for (const r of h.replicas) assert.deepEqual(await r.names(), ["other"], r.url);
    const attachedAgain = h.events.slice(detachedAt).flatMap((e) => e.outcomes)
      .filter((o) => o.name === "colors" && ["attached", "repaired", "swapped"].includes(o.action));
    assert.deepEqual(attachedAgain, []);
    assert.deepEqual(
      ((await h.server()).desired as { name: string }[]).map((d) => d.name),
      ["other"],
      "the tombstone is dropped once every replica was seen without it",
    );
  });
});

Deno.test("a retrained version rolls out one replica at a time under load: every answer is the old or the new one", async () => {
  let staged = "";
  await withDeployment(async (h) => {
    const v1 = await writeVersion(model, join(h.dataDir, "adapters", "colors", "v1"), 1);
    staged = await writeVersion(model, join(h.dir, "staged-v2"), 2);
    const [old, fresh] = [await expectedText(model, v1), await expectedText(model, staged)];
    assert.notEqual(old, fresh, "the two versions must answer the prompt differently");
    await attachAll(h, old);

    let stop = false;
    const answers = h.replicas.map(() => [] as { status: number; text: string }[]);
    const clients = h.replicas.map(async (r, i) => {
      while (!stop) answers[i].push(await complete(r.url, "colors"));
    });
    const answered = async (n: number) => {
      while (answers.some((a) => a.length < n)) await new Promise((r) => setTimeout(r, 10));
    };
    try {
      await answered(2);
      const submit = await h.request("/v1/jobs", {
        model: join(h.dir, "m"),
        data: join(h.dir, "d"),
        name: "colors",
        attach: { server: "tiny" },
      });
      const { id } = await submit.json();
      const job = await waitFor((p) => h.request(p), id);
      assert.equal(job.state, "succeeded", JSON.stringify(job.error));
      const attach =
        (job.result as { attach: { replicas: { ok: boolean; action: string; version: string }[] } }).attach;
      assert.deepEqual(attach.replicas.map((r) => [r.ok, r.version]), h.replicas.map(() => [true, id]));
      // Swapped by the job's rollout, or by the loop just before it reached the replica.
      assert.ok(attach.replicas.every((r) => ["swapped", "unchanged"].includes(r.action)));
      const seen = answers.map((a) => a.length);
      await answered(Math.max(...seen) + 2);
    } finally {
      stop = true;
      await Promise.all(clients);
    }
    for (const [i, list] of answers.entries()) {
      const texts = list.map((a) => (a.status === 200 ? a.text : `HTTP ${a.status}: ${a.text}`));
      assert.ok(
        texts.every((t) => t === old || t === fresh),
        `replica ${i} answered ${JSON.stringify(texts)}`,
      );
      const firstNew = texts.indexOf(fresh);
      assert.ok(texts[0] === old && firstNew > 0, `replica ${i}: old answers, then new ones`);
      assert.ok(
        texts.slice(firstNew).every((t) => t === fresh),
        `replica ${i} went back: ${JSON.stringify(texts)}`,
      );
    }
    // One at a time: each replica's load of the new version ended before the next one's started.
    const loads = h.replicas.flatMap((r) => r.loads.filter((l) => l.path !== v1)).sort((a, b) =>
      a.started - b.started
    );
    assert.equal(loads.length, 3);
    for (let i = 1; i < loads.length; i++) {
      assert.ok(loads[i - 1].ended <= loads[i].started, "swaps overlapped");
    }
  }, copying(() => staged));
});

Deno.test("a replica whose verification fails keeps the old version; the failure is reported and not retried", async () => {
  await withDeployment(async (h) => {
    const v1 = await writeVersion(model, join(h.dataDir, "adapters", "colors", "v1"), 1);
    const old = await expectedText(model, v1);
    await attachAll(h, old);
    const v2 = await writeVersion(model, join(h.dataDir, "adapters", "colors", "v2"), 2);
    const fresh = await expectedText(model, v2);
    const picky = h.replicas[1];
    picky.hidden = v2; // it loads v2, then does not list it: verification fails

    const res = await h.request("/v1/adapters/colors/attach", { server: "tiny" });
    const report = await res.json();
    assert.equal(res.status, 200, JSON.stringify(report));
    assert.equal(report.version, "v2");
    assert.equal(report.complete, false);
    assert.deepEqual(report.replicas.map((r: { ok: boolean; version: string }) => [r.ok, r.version]), [
      [true, "v2"],
      [false, "v1"],
      [true, "v2"],
    ]);
    const failure = report.replicas[1];
    assert.equal(failure.transient, false);
    assert.match(failure.error, /does not list it/);
    assert.match(failure.error, /kept version v1/);
    const answers = await Promise.all(h.replicas.map((r) => complete(r.url, "colors")));
    assert.deepEqual(answers.map((a) => a.text), [fresh, old, fresh]);

    const reported = (await h.server()).replicas[1].adapters as {
      name: string;
      version: string;
      error: string;
    }[];
    assert.deepEqual(reported.map((a) => [a.name, a.version]), [["colors", "v1"]]);
    assert.match(reported[0].error, /kept version v1/);
    assert.match(
      await h.metrics(),
      new RegExp(`^flexora_replica_adapter_errors\\{server="tiny",replica="${picky.url}"\\} 1$`, "m"),
    );
    // The loop does not load a version that failed here again (it would serve it until the check fails).
    const loadsOfV2 = picky.loads.filter((l) => l.path === v2).length;
    for (let i = 0; i < 2; i++) {
      const pass = await h.next(loopOn(picky));
      assert.equal(colorsOutcome(pass)?.action, "skipped");
    }
    assert.equal(picky.loads.filter((l) => l.path === v2).length, loadsOfV2);
    assert.deepEqual(await complete(picky.url, "colors"), { status: 200, text: old });
  });
});

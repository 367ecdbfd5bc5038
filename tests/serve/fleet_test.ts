/**
 * Many hosts, one queue: three `flexora serve` processes on one throwaway PostgreSQL, running real (tiny) jobs on
 * the fixtures with short heartbeats. Jobs spread across the sidecars and all succeed; a job whose sidecar is
 * killed with SIGKILL is resumed by another from its checkpoint in the database; a cancel sent to another sidecar
 * stops it; a PostgreSQL restart mid-job loses nothing; and the reconcile loop of a deployment runs on one sidecar
 * at a time, another taking over when the leader is killed.
 *
 * Skipped, saying why, where PostgreSQL's server binaries are not installed (`.ci/run` installs them).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { createEmbeddedApp } from "../../src/serve/embedded/app.ts";
import { loadModel } from "../../src/model/model.ts";
import { ROOT } from "../model/shared.ts";
import { call, type JobView, serve, type ServeProcess, tinyJob, TOKEN, waitFor } from "./fleet.ts";
import { PG_MISSING, TestPostgres } from "./pg.ts";

/** Heartbeat 0.5 s (a lease lasts three), reconcile passes every 0.5 s: failures show within seconds. */
const FAST = ["--heartbeat", "0.5", "--reconcile-interval", "0.5", "--reconcile-jitter", "0"];

Deno.test({
  name:
    "fleet: three sidecars on one PostgreSQL share the queue, survive a killed host and a database restart",
  ignore: PG_MISSING !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const pg = await TestPostgres.start();
    const base = await Deno.makeTempDir({ prefix: "flexora-fleet-" });
    // The inference server of the deployment, in this process: every request it gets is recorded.
    const model = await loadModel(join(ROOT, "fixtures/tiny-llama"));
    const embedded = createEmbeddedApp({ model, allowedAdapterRoots: [base] });
    const requests: string[] = [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
      requests.push(`${req.method} ${new URL(req.url).pathname}`);
      return embedded.app.fetch(req);
    });
    const servers = join(base, "servers.json");
    await Deno.writeTextFile(
      servers,
      JSON.stringify([{ name: "emb", kind: "embedded", url: `http://127.0.0.1:${server.addr.port}` }]),
    );
    const args = ["--store", pg.url(), "--servers", servers, ...FAST];
    const sidecars: ServeProcess[] = [];
    const start = async (i: number) => (sidecars[i] = await serve(join(base, `host-${i}`), args));
    const logs = () => sidecars.map((s, i) => `--- sidecar ${i}\n${s.log.join("")}`).join("\n");
    const byOwner = async (job: JobView) => {
      const owners = await Promise.all(sidecars.map((s) => call(s.url, "/healthz").then((r) => r.sidecar)));
      return owners.indexOf(job.owner);
    };
    try {
      await Promise.all([0, 1, 2].map(start));

      await t.step("10 jobs submitted to one sidecar spread across all three and all succeed", async () => {
        const ids: string[] = [];
        for (let i = 0; i < 10; i++) {
          ids.push((await call(sidecars[0].url, "/v1/jobs", tinyJob(`spread-${i}`))).id);
        }
        const done = await Promise.all(
          ids.map((id, i) =>
            waitFor(() => sidecars[(i + 1) % 3].url, id, (j) => j.state === "succeeded", "success", logs)
          ),
        );
        const owners = new Set(done.map((j) => j.owner));
        // The others claim at their heartbeats while the first is busy.
        assert.equal(owners.size, 3, `the jobs ran on ${owners.size} sidecar(s): ${[...owners]}`);
      });

      await t.step(
        "a job whose sidecar is killed (SIGKILL) is resumed by another from its checkpoint",
        async () => {
          const body = tinyJob("killed", {
            options: { retrain: { epochs: 4, batchSize: 4 }, maxLength: 32, checkpointEvery: 2 },
          });
          const { id } = await call(sidecars[0].url, "/v1/jobs", body);
          const running = await waitFor(
            () => sidecars[1].url,
            id,
            (j) => (j.progress?.step ?? 0) >= 6,
            "step 6",
            logs,
          );
          const victim = await byOwner(running);
          assert.ok(victim >= 0, `an owner among the sidecars: ${running.owner}`);
          try {
            const before = (await call(sidecars[(victim + 1) % 3].url, `/v1/jobs/${id}/history`)).points as {
              id: number;
            }[];
            await sidecars[victim].stop("SIGKILL");
            const other = sidecars[(victim + 1) % 3].url;
            const done = await waitFor(
              () => other,
              id,
              (j) => j.state === "succeeded",
              "success after the kill",
              logs,
            );
            assert.notEqual(done.owner, running.owner, "another sidecar finished it");
            const after = (await call(other, `/v1/jobs/${id}/history`)).points as {
              id: number;
              stage: string;
              step: number;
            }[];
            // Resumed, not restarted: points from before the kill survive the rewind to the checkpoint.
            const kept = after.filter((p) => before.some((b) => b.id === p.id));
            assert.ok(kept.length > 0, "points written before the kill were kept");
            const steps = after.filter((p) => p.stage === "retrain").map((p) => p.step);
            assert.deepEqual(steps, [...new Set(steps)].sort((a, b) => a - b), "each step once, in order");
          } finally {
            await sidecars[victim].stop("SIGKILL"); // (already, unless a check failed first)
            await start(victim); // three sidecars again for the next steps
          }
        },
      );

      await t.step("a cancel sent to another sidecar stops the job; a third streams its events", async () => {
        const body = tinyJob("cancelled", {
          options: { retrain: { epochs: 20, batchSize: 4 }, maxLength: 32 },
        });
        const { id } = await call(sidecars[2].url, "/v1/jobs", body);
        const running = await waitFor(
          () => sidecars[2].url,
          id,
          (j) => (j.progress?.step ?? 0) >= 1,
          "running",
          logs,
        );
        const owner = await byOwner(running);
        // Followed on a sidecar that does not run it: the store's changes, polled, end with the cancel.
        const stream = fetch(`${sidecars[(owner + 2) % 3].url}/v1/jobs/${id}/events`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        }).then((r) => r.text());
        await new Promise((r) => setTimeout(r, 1500)); // a few steps' events
        await call(sidecars[(owner + 1) % 3].url, `/v1/jobs/${id}/cancel`, {});
        const done = await waitFor(
          () => sidecars[(owner + 2) % 3].url,
          id,
          (j) => j.state === "cancelled",
          "cancelled",
          logs,
          30_000,
        );
        assert.ok((done.progress?.step ?? 0) < 20 * 16, "it stopped early");
        const events = (await stream).split("\n").filter((l) => l.startsWith("data: "))
          .map((l) => JSON.parse(l.slice(6)) as { job: JobView; points: { step: number }[] });
        assert.equal(events.at(-1)!.job.state, "cancelled", "the stream ends with the cancel");
        assert.ok(events.some((e) => e.points.length > 0), "training points arrived on the other sidecar");
      });

      await t.step("PostgreSQL restarted mid-job: the sidecars reconnect and the job succeeds", async () => {
        const body = tinyJob("restart", {
          options: { retrain: { epochs: 4, batchSize: 4 }, maxLength: 32, checkpointEvery: 2 },
        });
        const { id } = await call(sidecars[1].url, "/v1/jobs", body);
        await waitFor(() => sidecars[1].url, id, (j) => (j.progress?.step ?? 0) >= 2, "running", logs);
        await pg.stop();
        await new Promise((r) => setTimeout(r, 1000)); // a second without the database, mid-job
        await pg.restart();
        await waitFor(
          () => sidecars[0].url,
          id,
          (j) => j.state === "succeeded",
          "success after the restart",
          logs,
        );
        const jobs = (await call(sidecars[2].url, "/v1/jobs")).jobs as JobView[];
        assert.equal(jobs.filter((j) => j.state === "succeeded").length, 12, "no job lost");
      });

      await t.step(
        "the reconcile loop runs on one sidecar; when it is killed another takes over",
        async () => {
          const { id } = await call(
            sidecars[0].url,
            "/v1/jobs",
            tinyJob("served", { attach: { server: "emb" } }),
          );
          await waitFor(() => sidecars[0].url, id, (j) => j.state === "succeeded", "attached", logs);
          const leaders = async () =>
            (await Promise.all(sidecars.map(async (s, i) => {
              const state = await call(s.url, "/v1/servers").catch(() => null);
              return state?.servers?.[0]?.leader ? i : -1;
            }))).filter((i) => i >= 0);
          const [leader, ...more] = await leaders();
          assert.deepEqual(more, [], "one leader");
          // The leader dies, then the replica loses the adapter (a restart): a new leader, one only, loads it again.
          await sidecars[leader].stop("SIGKILL");
          const unload = await fetch(`http://127.0.0.1:${server.addr.port}/v1/unload_lora_adapter`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ lora_name: "served" }),
          });
          assert.equal(unload.status, 200, await unload.text());
          requests.length = 0;
          // Heartbeats of 0.5 s take over in about 2 s on a quiet machine; the whole suite on 2 cores has starved
          // the sidecars' processes for over 20 s, so the bound is generous and the time is reported.
          const killed = Date.now(), deadline = killed + 60_000;
          const loaded = async () => {
            const models = await (await fetch(`http://127.0.0.1:${server.addr.port}/v1/models`)).json();
            return (models.data as { id: string }[]).some((m) => m.id === "served");
          };
          while (!(await loaded()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
          assert.ok(
            await loaded(),
            `no sidecar repaired the replica in ${Date.now() - killed} ms\n${logs()}`,
          );
          const loads = requests.filter((r) => r === "POST /v1/load_lora_adapter").length;
          assert.equal(loads, 1, `one load, by one leader: ${requests}`);
          const now = await leaders();
          assert.equal(now.length, 1);
          assert.notEqual(now[0], leader);
        },
      );
    } finally {
      await Promise.all(sidecars.map((s) => s.stop("SIGTERM")));
      await server.shutdown();
      await pg.close();
      await Deno.remove(base, { recursive: true }).catch(() => {});
    }
  },
});

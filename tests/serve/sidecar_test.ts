import assert from "node:assert/strict";
import { crashedJobStore, fakeSpawn, heldJob, testSidecar, TOKEN, waitFor } from "./helpers.ts";

Deno.test("a job is queued (202), runs through search and retraining, and succeeds with its adapter listed", async () => {
  const s = await testSidecar();
  try {
    const res = await s.request("/v1/jobs", { method: "POST", body: s.body() });
    assert.equal(res.status, 202);
    const { id } = await res.json();
    const job = await waitFor(s.request, id);
    assert.equal(job.state, "succeeded");
    const result = job.result as Record<string, unknown>;
    assert.deepEqual(result.selectedLayers, [0]);
    assert.equal(result.history, undefined, "the history is not in the job's body");
    const history = await (await s.request(`/v1/jobs/${id}/history`)).json();
    assert.deepEqual(history.points.map((p: { stage: string; step: number }) => [p.stage, p.step]), [
      ["search", 1],
      ["search", 2],
      ["retrain", 1],
    ]);
    assert.equal(history.next, null);
    assert.match(result.adapterPath as string, new RegExp(`adapters/demo/${id}$`));
    const adapters = (await (await s.request("/v1/adapters")).json()).adapters;
    assert.equal(adapters.length, 1);
    assert.equal(adapters[0].name, "demo");
    assert.deepEqual(adapters[0].summary.selectedLayers, [0]);
    assert.equal((await (await s.request("/v1/jobs")).json()).jobs.length, 1);
  } finally {
    await s.close();
  }
});

Deno.test("attach after export: success records the verification; a failure ends attach_failed and keeps the adapter", async () => {
  const ok = await testSidecar();
  const bad = await testSidecar({ failAttach: true });
  try {
    const a = await waitFor(
      ok.request,
      (await (await ok.request("/v1/jobs", {
        method: "POST",
        body: ok.body({ attach: { server: "local" } }),
      })).json()).id,
    );
    assert.equal(a.state, "succeeded");
    assert.equal(ok.attached[0].name, "demo");
    assert.equal(ok.attached[0].rank, 8);
    const b = await waitFor(
      bad.request,
      (await (await bad.request("/v1/jobs", {
        method: "POST",
        body: bad.body({ attach: { server: "local", name: "served" } }),
      })).json()).id,
    );
    assert.equal(b.state, "attach_failed");
    assert.deepEqual(b.error, {
      code: "attach_failed",
      message: "local: 500 Internal Server Error: out of memory",
    });
    assert.equal(
      (await (await bad.request("/v1/adapters")).json()).adapters.length,
      1,
      "the adapter is kept",
    );
  } finally {
    await ok.close();
    await bad.close();
  }
});

Deno.test("a failing run ends failed with the runner's message", async () => {
  const s = await testSidecar({ spawn: fakeSpawn({ fail: true }) });
  try {
    const job = await waitFor(
      s.request,
      (await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json()).id,
    );
    assert.equal(job.state, "failed");
    assert.match(
      (job.error as { message: string }).message,
      /DivergedError: retrain: the lora loss became NaN at step 1/,
    );
  } finally {
    await s.close();
  }
});

Deno.test("cancel stops a running job (checkpointing), cancel twice is 409, resume continues it", async () => {
  const { s, id, release } = await heldJob();
  try {
    assert.equal((await s.request(`/v1/jobs/${id}/cancel`, { method: "POST" })).status, 200);
    assert.equal((await waitFor(s.request, id)).state, "cancelled");
    const again = await s.request(`/v1/jobs/${id}/cancel`, { method: "POST" });
    assert.equal(again.status, 409);
    assert.match((await again.json()).error.message, /already cancelled/);
    release();
    assert.equal((await s.request(`/v1/jobs/${id}/resume`, { method: "POST" })).status, 200);
    assert.equal((await waitFor(s.request, id)).state, "succeeded");
    const finished = await s.request(`/v1/jobs/${id}/resume`, { method: "POST" });
    assert.equal(finished.status, 409);
    assert.match(
      (await finished.json()).error.message,
      /is succeeded; only interrupted or cancelled jobs resume/,
    );
  } finally {
    release();
    await s.close();
  }
});

Deno.test("jobs found running at start-up are marked interrupted and resumed from their checkpoint", async () => {
  const { dataDir, store } = await crashedJobStore("flexora-restart-");
  await store.update("crashed", { state: "retraining" });
  await store.close();
  const specs: string[] = [];
  const spawn = fakeSpawn();
  const s = await testSidecar({
    dataDir,
    spawn: (file, options) => (specs.push(file), spawn(file, options)),
  });
  try {
    const job = await waitFor(s.request, "crashed");
    assert.equal(job.state, "succeeded");
    assert.equal(JSON.parse(await Deno.readTextFile(specs[0])).resume, true);
  } finally {
    await s.close();
  }
});

Deno.test("the queue answers 429 when full", async () => {
  let release: () => void = () => {};
  const s = await testSidecar({
    spawn: fakeSpawn({ hold: new Promise((r) => (release = r)) }),
    maxQueued: 1,
  });
  try {
    const first = await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json();
    await waitFor(s.request, first.id, ["searching"]);
    assert.equal((await s.request("/v1/jobs", { method: "POST", body: s.body() })).status, 202);
    const full = await s.request("/v1/jobs", { method: "POST", body: s.body() });
    assert.equal(full.status, 429);
    assert.match((await full.json()).error.message, /queue is full \(1 jobs waiting\)/);
  } finally {
    release();
    await s.close();
  }
});

Deno.test("SSE events follow a job to its final state", async () => {
  const s = await testSidecar();
  try {
    const { id } = await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json();
    const res = await s.request(`/v1/jobs/${id}/events`);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const text = await res.text();
    const states = [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]).job.state);
    assert.equal(states.at(-1), "succeeded");
    assert.ok(states.length >= 2);
  } finally {
    await s.close();
  }
});

Deno.test("health, metrics, servers and the OpenAPI description", async () => {
  const s = await testSidecar();
  try {
    assert.deepEqual(await (await s.app.request("/healthz")).json(), { ok: true, sidecar: s.manager.owner });
    const metrics = await (await s.request("/metrics")).text();
    assert.match(metrics, /^flexora_jobs\{state="queued"\} 0$/m);
    assert.match(metrics, /^flexora_errors_total \d+$/m);
    const servers = (await (await s.request("/v1/servers")).json()).servers;
    assert.deepEqual(servers.map((x: { name: string; reachable: boolean }) => [x.name, x.reachable]), [[
      "local",
      true,
    ]]);
    assert.deepEqual(servers[0].desired, []);
    assert.deepEqual(
      servers[0].replicas.map((
        r: { url: string; state: string; reachable: boolean },
      ) => [r.url, r.state, r.reachable]),
      [["http://127.0.0.1:9", "pending", true]],
    );
    assert.match(metrics, /^flexora_desired_attachments\{server="local",state="attached"\} 0$/m);
    const doc = await (await s.request("/openapi.json")).json();
    for (
      const path of [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/cancel",
        "/v1/adapters/{name}/attach",
      ]
    ) {
      assert.ok(doc.paths[path], `openapi.json lacks ${path}`);
    }
    assert.ok(doc.components.schemas.JobCreate);
    assert.ok(doc.components.schemas.AttachReport && doc.components.schemas.DetachReport);
  } finally {
    await s.close();
  }
});

Deno.test("reads need the token too when the sidecar listens beyond loopback", async () => {
  const s = await testSidecar({ host: "0.0.0.0" });
  try {
    assert.equal((await s.app.request("/v1/jobs")).status, 401);
    assert.equal(
      (await s.app.request("/v1/jobs", { headers: { authorization: `Bearer ${TOKEN}` } })).status,
      200,
    );
    assert.equal((await s.app.request("/healthz")).status, 200);
  } finally {
    await s.close();
  }
});

Deno.test("an exception while running a job fails that job only; the sidecar keeps serving", async () => {
  const s = await testSidecar({
    spawn: () => {
      throw new Error("cannot start the runner");
    },
  });
  try {
    const job = await waitFor(
      s.request,
      (await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json()).id,
    );
    assert.equal(job.state, "failed");
    assert.deepEqual(job.error, { code: "internal", message: "Error: cannot start the runner" });
    assert.equal((await s.request("/healthz")).status, 200);
  } finally {
    await s.close();
  }
});

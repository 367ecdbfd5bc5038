/**
 * Jobs on Hub models: refused unless the sidecar allows Hub ids; accepted without touching the network in the
 * request handler; downloaded by the job (state `downloading`, `download` progress) from a fake Hub on 127.0.0.1.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type Spawn, spawnRunner } from "../../src/serve/spawn.ts";
import { TINY } from "../cli/run.ts";
import { commitId, FakeHub, folderFiles } from "../hub/fake_hub.ts";
import { fakeSpawn, testSidecar } from "./helpers.ts";

const C1 = commitId("sidecar");

/** Runs `fn` with HF_ENDPOINT and HF_HUB_CACHE pointing at a fake Hub and a new cache (the runner inherits them). */
async function withHub(fn: (hub: FakeHub, cache: string) => Promise<void>): Promise<void> {
  const hub = new FakeHub({ "org/tiny": { commits: { [C1]: await folderFiles(TINY) }, refs: { main: C1 } } });
  const cache = await Deno.makeTempDir({ prefix: "flexora-hub-jobs-" });
  const vars = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "0" };
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    await fn(hub, cache);
  } finally {
    for (const [k, v] of Object.entries(saved)) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
}

const quick = { maxLength: 64, checkpointEvery: 0, search: { epochs: 1 }, retrain: { epochs: 1 } };

Deno.test("a Hub id is refused unless allowed (--allow-hub, or its id or organisation listed)", async () => {
  for (
    const [allowHub, pattern] of [[undefined, /does not take Hub ids; start it with --allow-hub/], [
      ["other", "org/else"],
      /other than other, org\/else/,
    ]] as const
  ) {
    const s = await testSidecar({ allowHub: allowHub as string[] | undefined });
    try {
      const res = await s.request("/v1/jobs", { method: "POST", body: s.body({ model: "org/tiny" }) });
      assert.equal(res.status, 400);
      assert.match((await res.json()).error.message, pattern);
    } finally {
      await s.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  }
});

Deno.test("an allowed Hub id is queued without a download in the request handler", async () => {
  await withHub(async (hub) => {
    let release = () => {};
    const hold = new Promise<void>((r) => (release = r));
    const fake = fakeSpawn({ hold });
    const network: boolean[] = [];
    const spawn: Spawn = (file, options) => (network.push(options.network), fake(file, options));
    const s = await testSidecar({ allowHub: ["org"], spawn });
    try {
      const res = await s.request("/v1/jobs", {
        method: "POST",
        body: s.body({ model: "org/tiny@main", options: quick }),
      });
      assert.equal(res.status, 202, await res.clone().text());
      for (let i = 0; i < 500 && network.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(network, [true], "the runner of a Hub job may reach the network");
      const body = await res.json();
      assert.equal(body.estimate, null);
      assert.equal(body.job.request.model, "org/tiny@main");
      assert.equal(hub.requests.length, 0, "the handler made no request to the Hub");
      const bad = await s.request("/v1/jobs", {
        method: "POST",
        body: s.body({ model: "org/tiny", options: { retrain: { epochs: 0 } } }),
      });
      assert.equal(bad.status, 400, "options are still checked up front");
    } finally {
      release();
      await s.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  });
});

Deno.test("a job on a local model runs without network access", async () => {
  const fake = fakeSpawn();
  const network: boolean[] = [];
  const spawn: Spawn = (file, options) => (network.push(options.network), fake(file, options));
  const s = await testSidecar({ spawn });
  try {
    const res = await s.request("/v1/jobs", { method: "POST", body: s.body({ options: quick }) });
    assert.equal(res.status, 202, await res.clone().text());
    for (let i = 0; i < 500 && network.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(network, [false]);
  } finally {
    await s.close();
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("the job downloads the Hub model (state downloading, download progress), then trains on it", async () => {
  await withHub(async (hub, cache) => {
    const s = await testSidecar({ allowHub: true, spawn: spawnRunner });
    try {
      const res = await s.request("/v1/jobs", {
        method: "POST",
        body: s.body({ model: "org/tiny", options: quick }),
      });
      assert.equal(res.status, 202, await res.clone().text());
      const { id } = await res.json();
      const states: string[] = [], stages: string[] = [];
      const done = new Promise<void>((resolve) => {
        s.manager.subscribe(id, ({ job }) => {
          states.push(job.state);
          if (job.progress) stages.push(String(job.progress.stage));
          if (["succeeded", "failed", "attach_failed", "cancelled", "interrupted"].includes(job.state)) {
            resolve();
          }
        });
      });
      await done;
      const job = await (await s.request(`/v1/jobs/${id}`)).json();
      assert.equal(job.state, "succeeded", JSON.stringify(job.error));
      assert.ok(states.includes("downloading"), `states ${[...new Set(states)]}`);
      assert.ok(states.indexOf("downloading") < states.indexOf("searching"));
      assert.ok(stages.includes("download"));
      assert.ok(hub.requests.some((r) => r.server === "cdn"), "the weights came from the fake Hub");
      const snapshot = join(cache, "models--org--tiny", "snapshots", C1, "model.safetensors");
      assert.ok((await Deno.stat(snapshot)).isFile);
    } finally {
      await s.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  });
});

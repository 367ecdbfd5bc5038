/**
 * The sidecar with the real vLLM plugin against a server that is down or failing: bounded retries, then the job
 * ends `attach_failed` with the server's message, and the adapter stays available.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { PLUGINS } from "../../plugins/mod.ts";
import type { ServerConfig } from "../../plugins/types.ts";
import { createSidecar } from "../../src/serve/app.ts";
import type { RunnerHandle } from "../../src/serve/spawn.ts";
import { readSpec } from "../../src/serve/protocol.ts";
import { makeAdapter } from "../plugins/adapters.ts";
import { downUrl } from "../plugins/fakes/common.ts";
import { startVllm } from "../plugins/fakes/vllm.ts";
import { copyFixtures, fakeSummary, TOKEN, waitFor } from "./helpers.ts";
import { writeFlexoraJson } from "../flexora/report_fixture.ts";

/** A runner that "trains" by copying a real PEFT adapter to the job's output folder. */
async function copyingSpawn(): Promise<(specFile: string) => RunnerHandle> {
  const source = (await makeAdapter("source")).path;
  return (specFile) => ({
    events: (async function* () {
      const spec = await readSpec(specFile);
      await Deno.mkdir(spec.out, { recursive: true });
      for await (const f of Deno.readDir(source)) {
        await Deno.copyFile(join(source, f.name), join(spec.out, f.name));
      }
      await writeFlexoraJson(spec.out, { method: "lora", selectedLayers: [0, 1, 2] });
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

async function runWith(server: ServerConfig) {
  const dir = await Deno.makeTempDir({ prefix: "flexora-attach-faults-" });
  await copyFixtures(dir);
  const sidecar = await createSidecar(
    {
      dataDir: join(dir, "state"),
      token: TOKEN,
      host: "127.0.0.1",
      modelRoots: [dir],
      dataRoots: [dir],
      servers: [server],
    },
    PLUGINS,
    { spawn: await copyingSpawn(), call: { fetch, retries: 2, backoffMs: 10 } },
  );
  const request = (path: string, init: RequestInit = {}) =>
    Promise.resolve(
      sidecar.app.request(path, {
        ...init,
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      }),
    );
  try {
    const body = JSON.stringify({
      model: join(dir, "m"),
      data: join(dir, "d"),
      name: "colors",
      attach: { server: server.name },
    });
    const { id } = await (await request("/v1/jobs", { method: "POST", body })).json();
    const job = await waitFor(request, id);
    const adapters = (await (await request("/v1/adapters")).json()).adapters;
    return { job, adapters };
  } finally {
    await sidecar.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a vLLM server that is down: bounded retries, then attach_failed, and the adapter is kept", async () => {
  const started = performance.now();
  const { job, adapters } = await runWith({ name: "vllm", kind: "vllm", url: downUrl() });
  assert.equal(job.state, "attach_failed");
  assert.equal((job.error as { code: string }).code, "attach_failed");
  assert.match((job.error as { message: string }).message, /vllm|connect|refused/i);
  assert.ok(performance.now() - started < 10_000, "retries are bounded");
  assert.deepEqual(adapters.map((a: { name: string }) => a.name), ["colors"]);
});

Deno.test("a vLLM server answering 500 every time: attach_failed with the server's message", async () => {
  const fake = await startVllm();
  fake.failNext(1000);
  try {
    const { job } = await runWith({ ...fake.server, name: "vllm" });
    assert.equal(job.state, "attach_failed");
    assert.match((job.error as { message: string }).message, /500/);
  } finally {
    await fake.close();
  }
});

Deno.test("a vLLM server failing twice, then answering: the retries absorb the 500s and the job succeeds", async () => {
  const fake = await startVllm();
  fake.failNext(2);
  try {
    const { job } = await runWith({ ...fake.server, name: "vllm" });
    assert.equal(job.state, "succeeded", JSON.stringify(job.error));
    const attach = (job.result as { attach: { replicas: { ok: boolean; action: string }[] } }).attach;
    assert.deepEqual(attach.replicas.map((r) => [r.ok, r.action]), [[true, "attached"]]);
    // The first request (the pass lists the replica's adapters) was answered 500 twice, then retried.
    assert.deepEqual(fake.requests.slice(0, 3), ["GET /v1/models", "GET /v1/models", "GET /v1/models"]);
    assert.ok(fake.requests.includes("POST /v1/load_lora_adapter"));
  } finally {
    await fake.close();
  }
});

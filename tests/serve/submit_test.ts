/** A submit is planned by the library (the 202 answer carries the job's estimate), and resolves the job's device. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { planFinetune } from "../../src/flexora/mod.ts";
import { resolveDevice } from "../../src/runtime/device.ts";
import type { Spawn } from "../../src/serve/spawn.ts";
import { readSpec, type RunnerSpec } from "../../src/serve/protocol.ts";
import { fakeSpawn, testSidecar, waitFor } from "./helpers.ts";

Deno.test("a submit answers 202 with the library's estimate of the job's steps and memory", async () => {
  const s = await testSidecar();
  try {
    const options = { search: { batchSize: 4 }, retrain: { epochs: 2 } };
    const res = await s.request("/v1/jobs", { method: "POST", body: s.body({ options }) });
    assert.equal(res.status, 202);
    const { id, estimate } = await res.json();
    const plan = await planFinetune(join(s.dir, "models", "m"), join(s.dir, "datasets", "d"), options);
    assert.deepEqual(estimate, plan.estimate);
    assert.deepEqual(estimate.steps, { search: 16, retrain: 16, total: 32 }); // 64 examples
    assert.ok(estimate.memoryBytes > estimate.weightsBytes);
    await waitFor(s.request, id);
  } finally {
    await s.close();
  }
});

Deno.test("a job names its own device: it trains there, whatever the sidecar's, and its record shows it", async () => {
  const specs: Promise<RunnerSpec>[] = [];
  const inner = fakeSpawn();
  const spawn: Spawn = (file, options) => (specs.push(readSpec(file)), inner(file, options));
  // The sidecar's own device is webgpu: a job that names cpu still trains on the CPU.
  const s = await testSidecar({ spawn, device: "webgpu" });
  try {
    const res = await s.request("/v1/jobs", { method: "POST", body: s.body({ device: "cpu" }) });
    assert.equal(res.status, 202);
    const { id, job } = await res.json();
    assert.equal(job.request.device, "cpu");
    const done = await waitFor(s.request, id);
    assert.equal(done.state, "succeeded");
    assert.equal((done.request as { device: string }).device, "cpu");
    assert.deepEqual((await Promise.all(specs)).map((spec) => spec.device), ["cpu"]);
    // auto is resolved at submit: the record names the concrete device.
    const auto = await (await s.request("/v1/jobs", { method: "POST", body: s.body({ device: "auto" }) }))
      .json();
    assert.equal(auto.job.request.device, (await resolveDevice("auto")).device);
    await waitFor(s.request, auto.id);
  } finally {
    await s.close();
  }
});

Deno.test("a job's device that is unknown is a 400 naming the field", async () => {
  const s = await testSidecar();
  try {
    const res = await s.request("/v1/jobs", { method: "POST", body: s.body({ device: "tpu" }) });
    assert.equal(res.status, 400);
    const { error } = await res.json();
    assert.equal(error.field, "device");
    assert.equal((await s.manager.list()).length, 0);
  } finally {
    await s.close();
  }
});

Deno.test({
  name: "a job's device whose provider does not load here is refused at submit with the install line",
  // A machine with the CUDA provider can use it (probing cuda alone: WebGPU's probe would start Dawn).
  ignore: await resolveDevice("cuda").then(() => true, () => false),
  fn: async () => {
    const s = await testSidecar();
    try {
      const res = await s.request("/v1/jobs", { method: "POST", body: s.body({ device: "cuda" }) });
      assert.equal(res.status, 400);
      const { error } = await res.json();
      assert.match(error.message, /device 'cuda' is unavailable \(.+\); .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
      assert.equal((await s.manager.list()).length, 0);
    } finally {
      await s.close();
    }
  },
});

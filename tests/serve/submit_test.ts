/** A submit is planned by the library: the 202 answer carries the job's estimate. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { planFinetune } from "../../src/flexora/mod.ts";
import { testSidecar, waitFor } from "./helpers.ts";

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

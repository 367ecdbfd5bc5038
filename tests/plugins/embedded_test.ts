/** The embedded server's plugin: vLLM's routes under the kind "embedded", run against the vLLM fake. */

import assert from "node:assert/strict";
import { PLUGINS } from "../../plugins/mod.ts";
import { makeAdapter } from "./adapters.ts";
import { conformance, FAST } from "./conformance.ts";
import { startVllm } from "./fakes/vllm.ts";

conformance("embedded", () => startVllm({ kind: "embedded", token: "secret" }));

Deno.test("embedded: results name the embedded server and use vLLM's load route", async () => {
  const fake = await startVllm({ kind: "embedded" });
  try {
    const result = await PLUGINS.embedded.attach(fake.server, await makeAdapter("alpha"), FAST);
    assert.equal(result.server, "fake-vllm");
    assert.equal(fake.server.kind, "embedded");
    assert.ok(fake.requests.includes("POST /v1/load_lora_adapter"));
  } finally {
    await fake.close();
  }
});

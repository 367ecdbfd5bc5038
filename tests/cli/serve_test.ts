import assert from "node:assert/strict";
import { resolveDevice } from "../../src/runtime/device.ts";
import { flexora } from "./run.ts";

Deno.test("serve --device: an unknown name is a usage error, an unavailable device stops the start", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "flexora-serve-" });
  try {
    const bogus = await flexora("serve", "--device", "tpu", "--data-dir", dataDir, "--port", "0");
    assert.equal(bogus.code, 2);
    assert.match(bogus.err, /--device.*tpu/);
    const why = await resolveDevice("cuda").then(() => null, (e: Error) => e.message);
    if (why === null) return; // a CUDA host: serve would start and wait for a signal
    const cuda = await flexora("serve", "--device", "cuda", "--data-dir", dataDir, "--port", "0");
    assert.equal(cuda.code, 1);
    assert.match(cuda.err, /device 'cuda' is unavailable/);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

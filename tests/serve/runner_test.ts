import assert from "node:assert/strict";
import { join } from "node:path";
import { spawnRunner } from "../../src/serve/jobs.ts";
import type { RunnerEvent, RunnerSpec } from "../../src/serve/runner.ts";
import { resolveDevice } from "../../src/runtime/device.ts";
import { ROOT } from "../model/shared.ts";

/** Runs the real runner on a spec; returns its events and exit code. */
async function run(spec: Partial<RunnerSpec>): Promise<{ events: RunnerEvent[]; code: number }> {
  const dir = await Deno.makeTempDir({ prefix: "flexora-runner-" });
  try {
    const file = join(dir, "spec.json");
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        model: join(ROOT, "fixtures/tiny-llama"),
        data: join(ROOT, "fixtures/tiny-data"),
        options: { maxLength: 64, checkpointEvery: 0, search: { epochs: 1 }, retrain: { epochs: 1 } },
        out: join(dir, "adapter"),
        checkpointDir: join(dir, "checkpoints"),
        resume: false,
        ...spec,
      }),
    );
    const runner = spawnRunner(file);
    const events = await Array.fromAsync(runner.events);
    return { events, code: await runner.exited };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the runner trains on the device in its spec, and a device it cannot use is the job's error", async () => {
  const ok = await run({ device: "cpu" });
  assert.equal(ok.code, 0);
  assert.equal(ok.events.at(-1)?.type, "result");
  const cuda = await run({ device: "cuda" });
  const here = await resolveDevice("cuda").then(() => null, (e: Error) => e.message);
  if (here === null) return assert.equal(cuda.events.at(-1)?.type, "result"); // a CUDA host
  assert.equal(cuda.code, 1);
  const last = cuda.events.at(-1);
  assert.equal(last?.type, "error");
  assert.equal((last as { message: string }).message, here);
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { runnerCommand, spawnRunner } from "../../src/serve/spawn.ts";
import type { RunnerEvent, RunnerSpec } from "../../src/serve/protocol.ts";
import { resolveDevice } from "../../src/runtime/device.ts";
import { ROOT } from "../model/shared.ts";

/** Writes a runner spec for the tiny fixture into `dir` (search epochs as given); returns its path. */
async function writeTestSpec(dir: string, spec: Partial<RunnerSpec> = {}, searchEpochs = 1): Promise<string> {
  const file = join(dir, "spec.json");
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      model: join(ROOT, "fixtures/tiny-llama"),
      data: join(ROOT, "fixtures/tiny-data"),
      options: {
        maxLength: 64,
        checkpointEvery: 0,
        search: { epochs: searchEpochs },
        retrain: { epochs: 1 },
      },
      out: join(dir, "adapter"),
      checkpointDir: join(dir, "checkpoints"),
      resume: false,
      ...spec,
    }),
  );
  return file;
}

/** Runs the real runner on a spec; returns its events and exit code. */
async function run(spec: Partial<RunnerSpec>): Promise<{ events: RunnerEvent[]; code: number }> {
  const dir = await Deno.makeTempDir({ prefix: "flexora-runner-" });
  try {
    const runner = spawnRunner(await writeTestSpec(dir, spec));
    const events = await Array.fromAsync(runner.events);
    return { events, code: (await runner.exited).code };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the runner trains on the device in its spec, and a device it cannot use is the job's error", async () => {
  const ok = await run({ device: "cpu" });
  assert.equal(ok.code, 0);
  assert.equal(ok.events.at(-1)?.type, "result");
  // Each stage's checkpoint at its end is announced (the sidecar copies it into a shared store), after its steps.
  const saved = ok.events.flatMap((e) => e.type === "checkpoint" ? [`${e.stage}@${e.step}`] : []);
  const last = (stage: string) =>
    ok.events.findLast((e) => e.type === "progress" && e.event.stage === stage) as {
      event: { step: number };
    };
  assert.deepEqual(saved, [`search@${last("search").event.step}`, `retrain@${last("retrain").event.step}`]);
  const cuda = await run({ device: "cuda" });
  const here = await resolveDevice("cuda").then(() => null, (e: Error) => e.message);
  if (here === null) return assert.equal(cuda.events.at(-1)?.type, "result"); // a CUDA host
  assert.equal(cuda.code, 1);
  const end = cuda.events.at(-1);
  assert.equal(end?.type, "error");
  assert.equal((end as { message: string }).message, here);
});

Deno.test("when the sidecar goes (stdout closed, or stdout and stdin), the runner checkpoints where it was and exits cleanly", async () => {
  for (const closing of ["stdout", "both"] as const) {
    const dir = await Deno.makeTempDir({ prefix: "flexora-runner-" });
    try {
      const file = await writeTestSpec(dir, {}, 50);
      // The sidecar's own command line for it, with stderr piped to read.
      const { command, args, cwd } = runnerCommand(file, { network: false });
      const child = new Deno.Command(command, { args, cwd, stdin: "piped", stdout: "piped", stderr: "piped" })
        .spawn();
      const stderr = new Response(child.stderr).text();
      // Read events until the search has taken a few steps, then let go of the pipes as a dying sidecar would.
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let seen = 0, buffered = "";
      while (seen < 3) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the runner ended early: ${await stderr}`);
        buffered += value;
        for (const line of buffered.split("\n").slice(0, -1)) {
          const e = JSON.parse(line);
          if (e.type === "progress" && e.event.stage === "search") seen = e.event.step;
        }
        buffered = buffered.slice(buffered.lastIndexOf("\n") + 1);
      }
      await reader.cancel();
      if (closing === "both") await child.stdin.close();
      const { code } = await child.status;
      if (closing === "stdout") await child.stdin.close();
      const log = await stderr;
      assert.equal(code, 3, `${closing}: the runner stops as asked, exit 3, not a crash:\n${log}`);
      assert.doesNotMatch(log, /BrokenPipe/);
      const ckpt = JSON.parse(await Deno.readTextFile(join(dir, "checkpoints", "search", "checkpoint.json")));
      // The checkpoint is where the run was: at most a couple of steps past the last one the sidecar saw.
      assert.ok(
        ckpt.step >= seen && ckpt.step <= seen + 5,
        `${closing}: checkpoint at ${ckpt.step}, seen ${seen}`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

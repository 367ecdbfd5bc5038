/**
 * The sidecar as users run it: `flexora serve` in its own process with the embedded inference server, a real
 * training job on the fixtures attached to it, and the sidecar killed with SIGKILL mid-training and restarted.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "../model/shared.ts";
import { serve, type ServeProcess, TOKEN } from "./fleet.ts";

/** Starts `flexora serve` with the embedded inference server; its URL is read from what the sidecar printed. */
async function serveEmbedded(dataDir: string): Promise<ServeProcess & { embedded: string }> {
  const s = await serve(dataDir, [
    "--embedded-port",
    "0",
    "--embedded-model",
    join(ROOT, "fixtures/tiny-llama"),
  ]);
  const embedded = /embedded inference server for .* on (http:\/\/127\.0\.0\.1:\d+)/.exec(s.log.join(""))
    ?.[1];
  if (!embedded) throw new Error(`the embedded server did not start:\n${s.log.join("")}`);
  return { ...s, embedded };
}

const auth = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };

async function poll(
  sidecar: ServeProcess,
  id: string,
  until: (job: { state: string; progress: { stage?: string; step?: number } | null }) => boolean,
) {
  for (let i = 0; i < 1200; i++) {
    const job = await (await fetch(`${sidecar.url}/v1/jobs/${id}`)).json();
    if (until(job)) return job;
    if (["failed", "attach_failed", "cancelled"].includes(job.state)) {
      throw new Error(`job ended ${job.state}: ${JSON.stringify(job.error)}\n${sidecar.log.join("")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("timed out waiting for the job");
}

Deno.test({
  name:
    "serve: a job killed with its sidecar (SIGKILL) resumes after a restart, succeeds, and the adapter answers differently",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "flexora-e2e-" });
    let s = await serveEmbedded(dataDir);
    try {
      const body = {
        model: "fixtures/tiny-llama",
        data: "fixtures/tiny-data",
        name: "colors",
        options: {
          search: { loraLr: 0.01, gateLr: 0.05, epochs: 3 },
          retrain: { lr: 0.01, epochs: 6 },
          maxLength: 64,
          checkpointEvery: 2,
        },
        attach: { server: "embedded" },
      };
      const res = await fetch(`${s.url}/v1/jobs`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 202, await res.clone().text());
      const { id } = await res.json();
      // Kill the sidecar in the middle of retraining, after a checkpoint was written.
      const before = await poll(
        s,
        id,
        (j) => j.progress?.stage === "retrain" && (j.progress.step ?? 0) >= 5,
      );
      await s.stop("SIGKILL");
      const ckpt = JSON.parse(
        await Deno.readTextFile(join(dataDir, "jobs", id, "checkpoints", "retrain", "checkpoint.json")),
      );
      assert.ok(ckpt.step >= 4, `a retrain checkpoint was kept (step ${ckpt.step})`);

      s = await serveEmbedded(dataDir);
      const job = await poll(s, id, (j) => j.state === "succeeded");
      assert.ok(before.progress.step >= 5);
      const history = (await (await fetch(`${s.url}/v1/jobs/${id}/history`)).json()).points as {
        stage: string;
        step: number;
      }[];
      // Resumed from the checkpoint: retraining continued after it instead of starting over.
      assert.ok(history.some((h) => h.stage === "retrain" && h.step > ckpt.step));
      assert.equal(job.result.attach.verification.listed, true);

      const ask = async (model: string) =>
        (await (await fetch(`${s.embedded}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            model,
            prompt: "what color is the ripe banana ? answer :",
            max_tokens: 4,
            temperature: 0,
          }),
        })).json()).choices[0].text;
      const base = await ask("tiny-llama");
      const tuned = await ask("colors");
      assert.notEqual(tuned, base, "the adapter must change the answer");
    } finally {
      await s.stop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});

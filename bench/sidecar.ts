/**
 * Sidecar benchmarks (issue #5):
 * (a) status-route latency (GET /v1/jobs/:id over real HTTP on 127.0.0.1) while a job trains in its child
 *     process; p50 and p99 of `--requests` calls (target p99 < 50 ms);
 * (b) time from an exported adapter to the first answer that uses it on the embedded server: load route + the
 *     first one-token completion naming the adapter; median of `--repeats` (target < 0.5 s).
 *
 * Usage: `deno run -A bench/sidecar.ts [--requests 300] [--repeats 7] [--json]`
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { PLUGINS } from "../plugins/mod.ts";
import { finetune } from "../src/flexora/pipeline.ts";
import { loadModel } from "../src/model/model.ts";
import { createSidecar } from "../src/serve/app.ts";
import { createEmbeddedApp } from "../src/serve/embedded/app.ts";
import { median } from "./stats.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const { values } = parseArgs({
  args: Deno.args,
  options: { requests: { type: "string" }, repeats: { type: "string" }, json: { type: "boolean" } },
});
const requests = Number(values.requests ?? 300), repeats = Number(values.repeats ?? 7);
const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

// (a) Status latency while training.
const dir = await Deno.makeTempDir({ prefix: "flexora-bench-sidecar-" });
const sidecar = await createSidecar({
  dataDir: join(dir, "state"),
  token: "bench",
  host: "127.0.0.1",
  modelRoots: [ROOT],
  dataRoots: [ROOT],
  servers: [],
}, PLUGINS);
const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, sidecar.app.fetch);
const base = `http://127.0.0.1:${http.addr.port}`;
const submit = await fetch(`${base}/v1/jobs`, {
  method: "POST",
  headers: { authorization: "Bearer bench", "content-type": "application/json" },
  body: JSON.stringify({
    model: join(ROOT, "fixtures/tiny-llama"),
    data: join(ROOT, "fixtures/tiny-data"),
    name: "bench",
    options: { search: { epochs: 20 }, retrain: { epochs: 40 }, maxLength: 64 },
  }),
});
const { id } = await submit.json();
const latencies: number[] = [];
let trainingSeen = 0;
for (let i = 0; i < requests; i++) {
  const t0 = performance.now();
  const job = await (await fetch(`${base}/v1/jobs/${id}`)).json();
  latencies.push(performance.now() - t0);
  if (job.state === "searching" || job.state === "retraining") trainingSeen++;
  await new Promise((r) => setTimeout(r, 20));
}
await sidecar.manager.cancel(id);
await http.shutdown();
await sidecar.close();
const status = {
  requests,
  whileTraining: trainingSeen,
  p50: quantile(latencies, 0.5),
  p99: quantile(latencies, 0.99),
};

// (b) Export → first answer with the adapter on the embedded server.
const model = await loadModel(join(ROOT, "../shared/models/stories260K"));
const adapterDirs: string[] = [];
for (let i = 0; i < repeats; i++) {
  const out = join(dir, `adapter-${i}`);
  await finetune(model, join(ROOT, "fixtures/tiny-data"), {
    method: "lora",
    retrain: { epochs: 1 },
    maxLength: 64,
    checkpointEvery: 0,
  }, { out });
  adapterDirs.push(out);
}
const embedded = createEmbeddedApp({ model });
const firstAnswer: number[] = [];
for (const [i, path] of adapterDirs.entries()) {
  const t0 = performance.now();
  const load = await embedded.app.request("/v1/load_lora_adapter", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ lora_name: `a${i}`, lora_path: path }),
  });
  if (load.status !== 200) throw new Error(`load failed: ${await load.text()}`);
  const answer = await embedded.app.request("/v1/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: `a${i}`, prompt: "Once upon a time", max_tokens: 1, temperature: 0 }),
  });
  await answer.json();
  firstAnswer.push((performance.now() - t0) / 1000);
}
await embedded.close();
await Deno.remove(dir, { recursive: true });
const attach = { repeats, medianSeconds: median(firstAnswer), all: firstAnswer };

if (values.json) console.log(JSON.stringify({ status, attach }));
else {
  console.log(
    `status route while training: p50 ${status.p50.toFixed(1)} ms, p99 ${status.p99.toFixed(1)} ms ` +
      `(${requests} requests, ${trainingSeen} while the job trained)`,
  );
  console.log(
    `export → first answer with the adapter: median ${attach.medianSeconds.toFixed(3)} s over ${repeats}`,
  );
}

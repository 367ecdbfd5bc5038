import assert from "node:assert/strict";
import { join } from "node:path";
import { finetune } from "../../src/flexora/pipeline.ts";
import { fromJob, fromReport, renderSvg } from "../../src/report/svg.ts";
import { SqliteStore } from "../../src/serve/store/mod.ts";
import type { HistoryPoint } from "../../src/flexora/progress.ts";
import { flexora } from "../cli/run.ts";
import { ROOT } from "../model/shared.ts";

const tmp = await Deno.makeTempDir({ prefix: "flexora-plot-" });
addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
const adapter = join(tmp, "adapter");
const run = await finetune(join(ROOT, "fixtures/tiny-llama"), join(ROOT, "fixtures/tiny-data"), {
  search: { loraLr: 1e-2, gateLr: 0.05 },
  retrain: { lr: 1e-2, epochs: 2 },
  maxLength: 64,
  checkpointEvery: 0,
}, { out: adapter });

const count = (svg: string, pattern: RegExp) => [...svg.matchAll(pattern)].length;

Deno.test("the SVG of a run has one bar per layer, the selected ones marked, and a curve per layer and loss", async () => {
  const report = JSON.parse(await Deno.readTextFile(join(adapter, "flexora.json")));
  const svg = renderSvg(fromReport(report, "tiny"));
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  assert.equal(count(svg, /<rect class="gate/g), 3);
  assert.equal(count(svg, /<rect class="gate selected"/g), run.layers.length);
  for (const l of run.layers) assert.match(svg, new RegExp(`class="gate selected" data-layer="${l}"`));
  // A gate curve per layer, search train and validation losses, retraining train and validation losses per epoch.
  assert.equal(count(svg, /class="curve"/g), 3 + 2 + 2);
  assert.match(svg, /selection: positive, layers /);
  assert.equal(count(svg, /<svg/g), 1);
  assert.doesNotMatch(svg, /NaN|undefined/);
});

Deno.test("a job record draws the same bars from its history", () => {
  const job = { id: "j1", state: "succeeded", result: { selectedLayers: [1] } };
  const history: HistoryPoint[] = [
    { stage: "search", step: 1, loss: 3, valLoss: 3.2, gates: [1, 1, 1] },
    { stage: "search", step: 2, loss: 2.8, valLoss: 3.0, gates: [0.8, 1.5, 0.7] },
    { stage: "retrain", step: 1, loss: 2.5 },
    { stage: "retrain", step: 2, loss: 2.4 },
    { stage: "evaluate", step: 2, valLoss: 2.6 },
  ];
  const svg = renderSvg(fromJob(job, history));
  assert.equal(count(svg, /<rect class="gate/g), 3);
  assert.match(svg, /class="gate selected" data-layer="1"/);
  assert.match(svg, /layer 1: gate 1\.500 \(selected\)/);
  assert.match(svg, /job j1 \(succeeded\)/);
  // Gate curves per layer, search train and validation, retraining train per step and validation per epoch.
  assert.equal(count(svg, /class="curve"/g), 3 + 2 + 2);
  assert.doesNotMatch(svg, /NaN|undefined/);
  // The one validation point of the retraining is drawn as a dot (a one-point polyline is invisible).
  const validation =
    /<polyline class="curve" points="([\d.]+),([\d.]+)"[^>]*\/><circle class="point" cx="([\d.]+)" cy="([\d.]+)"/g;
  assert.ok([...svg.matchAll(validation)].some((m) => m[1] === m[3] && m[2] === m[4]));
});

Deno.test("while a job searches, its chart marks the layers its rule would select from the latest logits", () => {
  const searching = (select?: string, method?: string) => ({
    id: "j3",
    state: "searching",
    request: { options: { ...(select ? { select } : {}), ...(method ? { method } : {}) } },
  });
  const history: HistoryPoint[] = [{
    stage: "search",
    step: 1,
    gates: [1.2, 0.6, 1.2],
    logits: [0.1, -0.6, 0.1],
  }];
  const positive = fromJob(searching(), history);
  assert.deepEqual(positive.selected, [0, 2]);
  assert.equal(positive.rule, "positive (so far)");
  assert.match(renderSvg(positive), /gate per layer at step 1 — selection: positive \(so far\), layers 0, 2/);
  assert.deepEqual(fromJob(searching("top-k:1"), history).selected, [0]);
  // Baselines have no search and no rule.
  assert.deepEqual(fromJob(searching(undefined, "lora"), history).selected, []);
  assert.equal(fromJob(searching(undefined, "lora"), history).rule, undefined);
});

Deno.test("flexora plot writes the SVG of an adapter folder, and of a job from the sidecar's store", async () => {
  const out = join(tmp, "a.svg");
  const r = await flexora("plot", adapter, "--out", out);
  assert.equal(r.code, 0, r.err);
  assert.match(await Deno.readTextFile(out), /class="gate selected"/);
  const dataDir = join(tmp, "state");
  await Deno.mkdir(dataDir);
  const store = new SqliteStore(join(dataDir, "jobs.sqlite"));
  await store.create("j2", {});
  await store.update("j2", { state: "succeeded", result: { selectedLayers: [0] } });
  await store.addPoint("j2", { stage: "search", step: 1, gates: [2, 1] });
  await store.close();
  const jobOut = join(tmp, "j.svg");
  assert.equal((await flexora("plot", "j2", "--data-dir", dataDir, "--out", jobOut)).code, 0);
  assert.match(await Deno.readTextFile(jobOut), /job j2/);
  const missing = await flexora("plot", "nope", "--data-dir", dataDir, "--out", jobOut);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /'nope' is neither an adapter folder/);
  // The same job through a store URL (as for a sidecar on PostgreSQL), the data dir unused.
  const viaUrl = join(tmp, "u.svg");
  const r2 = await flexora(
    "plot",
    "j2",
    "--store",
    `sqlite:${join(dataDir, "jobs.sqlite")}`,
    "--out",
    viaUrl,
  );
  assert.equal(r2.code, 0, r2.err);
  assert.equal(await Deno.readTextFile(viaUrl), await Deno.readTextFile(jobOut));
  const bad = await flexora("plot", "j2", "--store", "redis://h/0", "--out", viaUrl);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--store: the store URL 'redis:\/\/h\/0' is neither/);
});

/**
 * Quality report: base zero-shot accuracy, all-layer LoRA, random-k and Flexora on the story tasks with
 * stories260K, all with the same (default) settings. Prints a Markdown table; `--json` prints the rows.
 *
 * Usage: `deno run -A bench/quality.ts [--tasks story-object,story-place,story-mood] [--seed S] [--json]`
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { loadDataset } from "../src/data/dataset.ts";
import { finetune, type FinetuneResult } from "../src/flexora/pipeline.ts";
import { buildScoringGraph } from "../src/model/graphs.ts";
import { loadModel } from "../src/model/model.ts";
import { Scorer } from "../src/flexora/score.ts";

const SHARED = fileURLToPath(new URL("../../shared/", import.meta.url));
const { values } = parseArgs({
  args: Deno.args,
  options: { tasks: { type: "string" }, seed: { type: "string" }, json: { type: "boolean" } },
});
const tasks = (values.tasks ?? "story-object,story-place,story-mood").split(",");
const seed = Number(values.seed ?? 0);

const model = await loadModel(join(SHARED, "models/stories260K"));
const scoring = await model.session(buildScoringGraph(model.config, model.weights));
const rows: Record<string, unknown>[] = [];
for (const task of tasks) {
  const data = await loadDataset(join(SHARED, "data", task), { tokenizer: model.tokenizer });
  const test = data.test!.map((e) => ({ prompt: e.prompt, choices: e.choices!, label: e.label }));
  const base = await new Scorer(scoring, model.tokenizer).multipleChoice(test);
  rows.push({ task, method: "base (zero-shot)", accuracy: base.accuracy, params: 0, layers: [], seconds: 0 });
  const run = async (method: "flexora" | "lora" | "random-k", select?: string): Promise<FinetuneResult> => {
    const r = await finetune(model, data, { method, seed, select, checkpointEvery: 0 });
    const t = r.retrain.epochs.at(-1)!.test!;
    rows.push({
      task,
      method,
      accuracy: t.accuracy,
      testLoss: t.loss,
      params: r.trainableParams,
      layers: r.layers,
      seconds: Object.values(r.timings).reduce((a, b) => a + b, 0),
    });
    if (!values.json) console.error(`${task} ${method}: accuracy ${t.accuracy}, layers ${r.layers}`);
    return r;
  };
  const flexora = await run("flexora");
  await run("lora");
  await run("random-k", `top-k:${flexora.layers.length}`);
}
await scoring.release();

if (values.json) console.log(JSON.stringify(rows));
else {
  console.log("| task | method | test accuracy | test loss | trainable params | layers | seconds |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const r of rows) {
    const loss = r.testLoss === undefined ? "-" : (r.testLoss as number).toFixed(4);
    console.log(
      `| ${r.task} | ${r.method} | ${(r.accuracy as number).toFixed(3)} | ${loss} | ${r.params} | ${
        (r.layers as number[]).join(",") || "-"
      } | ${(r.seconds as number).toFixed(0)} |`,
    );
  }
}

/**
 * The quality study (`deno task study`, issue #18): Flexora against all-layer LoRA, random-k (as many seeded
 * random layers as Flexora chose) and grad-top-k (that many layers with the largest LoRA gradient at
 * initialisation) on stories260K, over tasks × regimes × seeds. Each finished cell is a line of
 * `<out>/cells.jsonl` and is not run again; at the end (and with `--report` alone) it writes `<out>/study.md`
 * (the table of means and 95 % t-intervals over seeds, and the issue's targets checked) and
 * `<out>/accuracy.svg` (test accuracy against training rows, one line per method).
 *
 * Usage: `deno task study [--out DIR] [--tasks story-place,story-object,story-mood] [--rows 32,128,512,2000]
 * [--noise 0,0.2] [--shift none,name,answer] [--lr 1e-3] [--rank 8] [--epochs N] [--seeds 0,1,2,3,4]
 * [--methods flexora,lora,random-k,grad-top-k] [--options JSON] [--flexora JSON] [--test-rows N]
 * [--val-rows N] [--threads N] [--report]`
 *
 * Test accuracy and loss are scored on the first `--test-rows` (default 150) test rows after the shift's filter;
 * the loss is the multiple-choice cross-entropy (see `./study/run.ts`). The validation rows and the first
 * `--test-rows` training rows as trained (label noise included) are scored the same way, so that settings are
 * chosen on validation and fit can be told from generalization. Sessions run `--threads` (default 1) intra-op
 * threads.
 *
 * A task is a folder under `../shared/data` (`winogrande` is `benchmarks/winogrande`: train_s, validation carved
 * from it, dev as test) or a path. `--options` is a pipeline input (`FinetuneInput`) merged into every method's;
 * `--flexora` one merged into flexora's (and so into the k that random-k and grad-top-k take). Retraining runs
 * `--epochs` (default max(1, round(512 / rows)): about 64 updates) at `--lr`, LoRA rank `--rank` with alpha
 * 2·rank; everything else is the pipeline's defaults.
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { type Dataset, loadDataset } from "../src/data/dataset.ts";
import type { FinetuneInput } from "../src/flexora/options.ts";
import { loadModel, type Model } from "../src/model/model.ts";
import { type Method, METHODS, planGroups, resolvedOptions, type Shift } from "./study/grid.ts";
import {
  accuracySvg,
  describeSearch,
  markdownTable,
  plotSelection,
  sameLayers,
  summarize,
  targets,
} from "./study/render.ts";
import { runGroup } from "./study/run.ts";
import { CellStore } from "./study/store.ts";

const SHARED = fileURLToPath(new URL("../../shared/", import.meta.url));
const STORY_TASKS = ["story-place", "story-object", "story-mood"];

const { values } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "out/study" },
    model: { type: "string", default: join(SHARED, "models/stories260K") },
    tasks: { type: "string", default: STORY_TASKS.join(",") },
    rows: { type: "string", default: "32,128,512,2000" },
    noise: { type: "string", default: "0" },
    shift: { type: "string", default: "none" },
    lr: { type: "string", default: "1e-3" },
    rank: { type: "string", default: "8" },
    epochs: { type: "string" },
    seeds: { type: "string", default: "0,1,2,3,4" },
    methods: { type: "string", default: METHODS.join(",") },
    options: { type: "string", default: "{}" },
    flexora: { type: "string", default: "{}" },
    "test-rows": { type: "string", default: "150" },
    threads: { type: "string", default: "1" },
    "val-rows": { type: "string" },
    report: { type: "boolean" },
  },
});

const list = (text: string) => text.split(",").map((s) => s.trim()).filter((s) => s !== "");
const numbers = (name: string, text: string) =>
  list(text).map((s) => {
    const n = Number(s);
    if (!Number.isFinite(n)) throw new Error(`--${name}: '${s}' is not a number`);
    return n;
  });
const json = (name: string, text: string): FinetuneInput => {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`--${name}: not JSON (${(e as Error).message}): ${text}`);
  }
};
const oneOf = <T extends string>(name: string, text: string, choices: readonly T[]): T[] =>
  list(text).map((s) => {
    if (!(choices as readonly string[]).includes(s)) {
      throw new Error(`--${name}: '${s}', choose from ${choices.join(", ")}`);
    }
    return s as T;
  });

const out = values.out;
const log = (line: string) => console.error(line);
const store = await CellStore.open(out, log);

if (!values.report) {
  const axes = {
    tasks: list(values.tasks),
    rows: numbers("rows", values.rows),
    noise: numbers("noise", values.noise),
    shift: oneOf<Shift>("shift", values.shift, ["none", "name", "answer"]),
    lr: numbers("lr", values.lr),
    rank: numbers("rank", values.rank),
    epochs: values.epochs === undefined ? undefined : numbers("epochs", values.epochs)[0],
    seeds: numbers("seeds", values.seeds),
    methods: oneOf<Method>("methods", values.methods, METHODS),
    options: json("options", values.options),
    flexora: json("flexora", values.flexora),
  };
  const groups = planGroups(axes);
  const loaded = await loadModel(values.model);
  // One intra-op thread by default: the model is tiny, and on a shared machine spinning threads cost more
  // than they give. Search and retraining run under the same setting, so their times compare.
  const threads = Number(values.threads);
  const model: Model = { ...loaded, session: (built, o = {}) => loaded.session(built, { threads, ...o }) };
  const datasets = new Map<string, Dataset>();
  const taskDir = (task: string) =>
    isAbsolute(task) || task.startsWith(".")
      ? task
      : task === "winogrande"
      ? join(SHARED, "data/benchmarks/winogrande")
      : join(SHARED, "data", task);
  const started = performance.now();
  for (const [i, group] of groups.entries()) {
    if (!datasets.has(group.task)) {
      datasets.set(group.task, await loadDataset(taskDir(group.task), { tokenizer: model.tokenizer }));
    }
    await runGroup(
      {
        model,
        store,
        log,
        testRows: Number(values["test-rows"]),
        valRows: values["val-rows"] === undefined ? undefined : Number(values["val-rows"]),
      },
      datasets.get(group.task)!,
      group,
    );
    log(`group ${i + 1}/${groups.length} done, ${((performance.now() - started) / 1000).toFixed(0)} s`);
  }
}

const summaries = summarize(store.all());
// Today's default search for a plain flexora cell at that lr and rank: the plot prefers it where it ran.
const defaultSearch = (lr: number, rank: number) =>
  describeSearch(
    resolvedOptions({
      task: "",
      regime: { rows: 1, noise: 0, shift: "none", lr, rank, epochs: 1 },
      method: "flexora",
      seed: 0,
      options: "{}",
      flexora: "{}",
    }).search,
  );
const plot = plotSelection(summaries, defaultSearch);
const table = markdownTable(summaries);
const [same, pairs] = sameLayers(store.all(), "flexora", "grad-top-k");
const verdicts = [
  ...targets(summaries, STORY_TASKS),
  ...(pairs ? [`Flexora and grad-top-k trained the same layers in ${same} of ${pairs} cells`] : []),
];
await Deno.writeTextFile(
  join(out, "study.md"),
  `# Quality study\n\n${table}\n\n## Targets\n\n${verdicts.map((v) => `- ${v}`).join("\n")}\n`,
);
if (plot) {
  await Deno.writeTextFile(
    join(out, "accuracy.svg"),
    accuracySvg(
      plot.summaries,
      `test accuracy (mean, 95 % CI over seeds); retrain lr ${plot.lr}, rank ${plot.rank}; search ${plot.search}`,
    ),
  );
}
console.log(table);
console.log("");
for (const v of verdicts) console.log(`- ${v}`);

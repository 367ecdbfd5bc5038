/**
 * Diagnosis of Flexora's gate search on one story task with stories260K (issue #18, item 2). Every number comes
 * from the training and validation splits; the test split is never read.
 *
 * - `worth`: each layer's worth from retrains: add-one-layer (LoRA on layer l alone) and leave-one-layer-out
 *   (every layer but l), scored by validation loss; writes the table to `--worth FILE`.
 * - `retrain`: one retrain on `--layers`, scored on validation only (to compare two selections).
 * - `search`: searches with the given settings (several seeds), reporting how far the gates move (per-step
 *   trajectory quantiles), the hypergradient size, the selected layers, the step from which every later step's
 *   gates select those same layers (`settled`: how much of the search the selection needed), and, given
 *   `--worth FILE`, Spearman's rank correlation of the final logits with the add-one and leave-one-out worth.
 *
 * Usage:
 * `deno run -A bench/search_diagnosis.ts worth --task story-place --rows 256 --worth /tmp/worth.json`
 * `deno run -A bench/search_diagnosis.ts search --task story-place --rows 256 --worth /tmp/worth.json
 *  [--gate-lr 0.01] [--lora-lr 1e-4] [--epochs 1] [--val 200] [--gate-form linear|cubed]
 *  [--hypergradient first-order|unrolled] [--seeds 0,1,2] [--json]`
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { loadDataset } from "../src/data/dataset.ts";
import type { Example } from "../src/data/example.ts";
import { tokenizeExamples } from "../src/data/tokenize.ts";
import { type FinetuneInput, resolveOptions } from "../src/flexora/options.ts";
import { retrain } from "../src/flexora/retrain.ts";
import { searchGates } from "../src/flexora/search.ts";
import { selectLayers } from "../src/flexora/select.ts";
import { loadModel } from "../src/model/model.ts";
import { Rng } from "../src/util/random.ts";

const SHARED = fileURLToPath(new URL("../../shared/", import.meta.url));
const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    task: { type: "string", default: "story-place" },
    rows: { type: "string", default: "256" },
    val: { type: "string", default: "200" },
    worth: { type: "string" },
    "gate-lr": { type: "string" },
    "lora-lr": { type: "string" },
    epochs: { type: "string" },
    "gate-form": { type: "string" },
    "gate-norm": { type: "string" },
    hypergradient: { type: "string" },
    "retrain-lr": { type: "string", default: "1e-3" },
    "retrain-epochs": { type: "string", default: "5" },
    seeds: { type: "string", default: "0" },
    json: { type: "boolean" },
    resume: { type: "boolean" },
    layers: { type: "string" },
  },
});
const experiment = positionals[0];
const model = await loadModel(join(SHARED, "models/stories260K"));
const data = await loadDataset(join(SHARED, "data", values.task!), { tokenizer: model.tokenizer });
const L = model.config.numLayers;

/** The first `n` training rows after a seeded shuffle (seed 1000: the same rows for every run). */
const pick = (rows: readonly Example[], n: number) => new Rng(1000).shuffle([...rows]).slice(0, n);
const trainRows = pick(data.train, Number(values.rows));
const valRows = data.validation!.slice(0, Number(values.val));
const tok = (rows: readonly Example[]) =>
  tokenizeExamples(rows, model.tokenizer, { maxLength: 512, appendEos: true }).sequences;
const train = tok(trainRows), validation = tok(valRows);
const run = { weightDecay: 0, maxGradNorm: 1, checkpointEvery: 0 };

/** The 1-based step from which every selection (one per step, the last the search's) equals the last one. */
function settledStep(selections: readonly string[]): number {
  let k = selections.length;
  while (k > 1 && selections[k - 2] === selections.at(-1)) k--;
  return k;
}

/** Spearman's rank correlation (average ranks for ties). */
function spearman(a: readonly number[], b: readonly number[]): number {
  const rank = (v: readonly number[]) => {
    const order = [...v.keys()].sort((i, j) => v[i] - v[j]);
    const r = new Array<number>(v.length);
    for (let i = 0; i < order.length;) {
      let j = i;
      while (j + 1 < order.length && v[order[j + 1]] === v[order[i]]) j++;
      for (let k = i; k <= j; k++) r[order[k]] = (i + j) / 2;
      i = j + 1;
    }
    return r;
  };
  const ra = rank(a), rb = rank(b);
  const mean = (ra.length - 1) / 2;
  let num = 0, da = 0, db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i] - mean) * (rb[i] - mean);
    da += (ra[i] - mean) ** 2;
    db += (rb[i] - mean) ** 2;
  }
  return num / Math.sqrt(da * db);
}

const fmt = (v: readonly number[], d = 2) => `[${v.map((x) => x.toFixed(d)).join(", ")}]`;

if (experiment === "worth") {
  const o = resolveOptions({
    retrain: { lr: Number(values["retrain-lr"]), epochs: Number(values["retrain-epochs"]) },
  });
  const valLoss = async (layers: number[]) => {
    const r = await retrain(model, { train, validation: valRows }, layers, { ...o.retrain, ...run, seed: 0 });
    const best = Math.min(...r.epochs.map((e) => e.validation!.loss));
    console.error(
      `layers ${layers}: validation loss per epoch ${fmt(r.epochs.map((e) => e.validation!.loss), 4)}`,
    );
    return { best, last: r.epochs.at(-1)!.validation!.loss, accuracy: r.epochs.at(-1)!.validation!.accuracy };
  };
  // `--resume`: retrains already in the --worth file are kept, not re-run.
  type Worth = Awaited<ReturnType<typeof valLoss>>;
  const known: { all?: Worth; addOne?: Worth[]; leaveOut?: Worth[] } = values.resume && values.worth
    ? JSON.parse(await Deno.readTextFile(values.worth))
    : {};
  const all = known.all ?? await valLoss([...Array(L).keys()]);
  const addOne: Worth[] = known.addOne ?? [], leaveOut: Worth[] = known.leaveOut ?? [];
  for (let l = addOne.length; l < L; l++) addOne.push(await valLoss([l]));
  for (let l = leaveOut.length; l < L; l++) {
    leaveOut.push(await valLoss([...Array(L).keys()].filter((x) => x !== l)));
  }
  const table = {
    task: values.task,
    rows: train.length,
    retrain: { lr: o.retrain.lr, epochs: o.retrain.epochs },
    all,
    addOne,
    leaveOut,
    // Worth: the lower the add-one loss, the more the layer is worth; the higher the loss without it, too.
    addOneWorth: addOne.map((r) => -r.best),
    leaveOutWorth: leaveOut.map((r) => r.best - all.best),
  };
  console.log(JSON.stringify(table));
  if (values.worth) await Deno.writeTextFile(values.worth, JSON.stringify(table));
} else if (experiment === "retrain") {
  // One retrain on `--layers`, scored on validation only (to compare two selections).
  const o = resolveOptions({
    retrain: { lr: Number(values["retrain-lr"]), epochs: Number(values["retrain-epochs"]) },
  });
  const layers = values.layers!.split(",").map(Number);
  const r = await retrain(model, { train, validation: valRows }, layers, { ...o.retrain, ...run, seed: 0 });
  console.log(JSON.stringify({ task: values.task, rows: train.length, layers, epochs: r.epochs }));
} else if (experiment === "search") {
  const worth = values.worth ? JSON.parse(await Deno.readTextFile(values.worth)) : undefined;
  const input: FinetuneInput = {
    search: {
      ...(values["gate-lr"] && { gateLr: Number(values["gate-lr"]) }),
      ...(values["lora-lr"] && { loraLr: Number(values["lora-lr"]) }),
      ...(values.epochs && { epochs: Number(values.epochs) }),
      ...(values["gate-form"] && { gateForm: values["gate-form"] as "linear" }),
      ...(values["gate-norm"] && { gateNormalization: values["gate-norm"] as "shared" }),
      ...(values.hypergradient && { hypergradient: values.hypergradient as "unrolled" }),
    },
  };
  const o = resolveOptions(input);
  for (const seed of values.seeds!.split(",").map(Number)) {
    const r = await searchGates(model, { train, validation }, { ...o.search, ...run, seed });
    const h = r.history;
    const at = (f: number) => h[Math.max(0, Math.ceil(f * h.length) - 1)].logits;
    const spread = (v: readonly number[]) => Math.max(...v) - Math.min(...v);
    const norms = h.map((x) => x.gateGradNorm ?? NaN).sort((a, b) => a - b);
    const row = {
      seed,
      steps: r.steps,
      seconds: r.seconds,
      spread: { q10: spread(at(0.1)), q25: spread(at(0.25)), q50: spread(at(0.5)), end: spread(r.logits) },
      maxAbsLogit: Math.max(...r.logits.map(Math.abs)),
      gateGradNormMedian: norms[Math.floor(norms.length / 2)],
      logits: r.logits,
      gates: r.gates,
      selected: selectLayers(r.logits).layers,
      settled: settledStep(h.map((x) => selectLayers(x.logits).layers.join())),
      firstValLoss: h[0].valLoss,
      lastValLoss: h.slice(-10).reduce((s, x) => s + x.valLoss, 0) / Math.min(10, h.length),
      rhoAddOne: worth ? spearman(r.logits, worth.addOneWorth) : undefined,
      rhoLeaveOut: worth ? spearman(r.logits, worth.leaveOutWorth) : undefined,
    };
    if (values.json) console.log(JSON.stringify(row));
    else {
      console.log(
        `seed ${seed}: ${r.steps} steps ${r.seconds.toFixed(1)} s; logit spread at 10/25/50/100 %: ${
          fmt(Object.values(row.spread))
        }; |hypergrad| median ${row.gateGradNormMedian.toExponential(1)}; logits ${
          fmt(r.logits)
        }; selected ${row.selected} from step ${row.settled} of ${r.steps}; rho add-one ${
          row.rhoAddOne?.toFixed(2)
        }, leave-out ${row.rhoLeaveOut?.toFixed(2)}`,
      );
    }
  }
} else {
  console.error("usage: search_diagnosis.ts worth|search [options] (see the module doc)");
  Deno.exit(2);
}

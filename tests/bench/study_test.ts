/**
 * The quality study's machinery (bench/quality.ts, bench/study/): the t-interval, the regime transforms (the test
 * split is never touched), resumability (a finished cell is not run again), and the table, targets and SVG.
 * Cells run on the tiny fixture model, so the whole file takes seconds.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadDataset } from "../../src/data/dataset.ts";
import type { Example } from "../../src/data/example.ts";
import { randomLayers } from "../../src/flexora/stages.ts";
import { loadModel } from "../../src/model/model.ts";
import { Rng } from "../../src/util/random.ts";
import { tInterval, tQuantile975 } from "../../bench/stats.ts";
import {
  cellInput,
  cellKey,
  defaultEpochs,
  type Method,
  planGroups,
  type Regime,
} from "../../bench/study/grid.ts";
import {
  accuracySvg,
  describeSearch,
  markdownTable,
  plotSelection,
  sameLayers,
  summarize,
  targets,
} from "../../bench/study/render.ts";
import { choiceLoss, runGroup } from "../../bench/study/run.ts";
import { type CellRecord, CellStore } from "../../bench/study/store.ts";
import { regimeSplits, trainKeys, withNoise } from "../../bench/study/transforms.ts";

const FIXTURES = fileURLToPath(new URL("../../fixtures/", import.meta.url));

Deno.test("tInterval: mean ± t(0.975, n−1)·s/√n, as scipy.stats.t.interval gives it", () => {
  // scipy.stats.t.interval(0.95, 4, loc=3, scale=scipy.stats.sem([1, 2, 3, 4, 5])) = (1.036757, 4.963243)
  const i = tInterval([1, 2, 3, 4, 5]);
  assert.equal(i.mean, 3);
  assert.ok(Math.abs(i.lo - 1.036757) < 1e-3 && Math.abs(i.hi - 4.963243) < 1e-3, `got [${i.lo}, ${i.hi}]`);
  // Constant values have no spread; one value has no interval at all.
  assert.deepEqual(tInterval([0.5, 0.5, 0.5]), { n: 3, mean: 0.5, half: 0, lo: 0.5, hi: 0.5 });
  assert.ok(Number.isNaN(tInterval([0.7]).half));
  assert.throws(() => tInterval([]), /at least one value/);
  // Past the table: t(0.975, 60) = 2.0003, t(0.975, 120) = 1.9799.
  assert.ok(Math.abs(tQuantile975(60) - 2.0003) < 2e-3 && Math.abs(tQuantile975(120) - 1.9799) < 1e-3);
  assert.throws(() => tQuantile975(0), /positive integer, got 0/);
});

const row = (i: number, name: string, label: number): Example => {
  const choices = [" park.", " room.", " farm.", " beach."];
  return {
    prompt: `Once there was a girl named ${name} (${i}).`,
    completion: choices[label],
    choices,
    label,
    source: `r${i}`,
  };
};
const NAMES = ["Amy", "Ben", "Dan", "Lily", "Max", "Sue"];
const splits = {
  train: Array.from({ length: 60 }, (_, i) => row(i, NAMES[i % 6], i % 4)),
  validation: Array.from({ length: 12 }, (_, i) => row(100 + i, NAMES[i % 6], i % 4)),
  test: Array.from({ length: 24 }, (_, i) => row(200 + i, NAMES[i % 6], (i + 1) % 4)),
};
const frozen = structuredClone(splits);

Deno.test("regimeSplits: a seeded draw with label noise in train only; validation and test untouched", () => {
  const r = regimeSplits(splits, { rows: 40, noise: 0.25, shift: "none", seed: 3 });
  assert.equal(r.train.length, 40);
  const original = new Map(splits.train.map((e) => [e.source, e]));
  const flipped = r.train.filter((e) => e.completion !== original.get(e.source)!.completion);
  assert.equal(flipped.length, 10);
  for (const e of flipped) assert.equal(e.choices![e.label!], e.completion); // label follows the completion
  assert.deepEqual(r.validation, splits.validation);
  assert.deepEqual(r.test, splits.test);
  assert.deepEqual(splits, frozen, "the input splits are not modified");
  // The same seed draws the same rows; another seed others.
  assert.deepEqual(regimeSplits(splits, { rows: 40, noise: 0.25, shift: "none", seed: 3 }), r);
  assert.notDeepEqual(regimeSplits(splits, { rows: 40, noise: 0.25, shift: "none", seed: 4 }).train, r.train);
  assert.throws(() => regimeSplits(splits, { rows: 61, noise: 0, shift: "none", seed: 0 }), /only 60 rows/);
  assert.throws(() => withNoise([{ prompt: "p", completion: " c", source: "s" }], 1, new Rng(0)), /choices/);
});

Deno.test("regimeSplits: a shift trains and validates on half the keys and tests on the other half, test rows as they were", () => {
  for (const shift of ["name", "answer"] as const) {
    const r = regimeSplits(splits, { rows: 20, noise: 0.2, shift, seed: 1, testRows: 10 });
    const key = (e: Example) => shift === "name" ? /named (\w+)/.exec(e.prompt)![1] : e.completion;
    const seen = trainKeys(splits.train, shift)!;
    assert.equal(seen.size, shift === "name" ? 3 : 2);
    // Keys of the clean rows: noise may give a training row an unseen answer, never an unseen story.
    const clean = new Map(splits.train.map((e) => [e.source, e]));
    assert.ok(r.train.every((e) => seen.has(key(clean.get(e.source)!))));
    assert.ok(r.validation.every((e) => seen.has(key(e))));
    assert.ok(r.test.length === 10 && r.test.every((e) => !seen.has(key(e))));
    const tests = new Map(splits.test.map((e) => [e.source, e]));
    for (const e of r.test) assert.deepEqual(e, tests.get(e.source));
  }
  const nameless = { ...splits, train: splits.train.map((e) => ({ ...e, prompt: "no name here" })) };
  assert.throws(() => regimeSplits(nameless, { rows: 4, noise: 0, shift: "name", seed: 0 }), /named X/);
});

Deno.test("planGroups: seeds outermost, flexora first and pulled in by the methods that take its k; keys tell cells apart", () => {
  const groups = planGroups({
    tasks: ["a", "b"],
    rows: [32, 128],
    noise: [0],
    shift: ["none"],
    lr: [1e-3],
    rank: [8],
    seeds: [0, 1],
    methods: ["random-k", "lora"],
    options: {},
    flexora: { search: { epochs: 2 } },
  });
  assert.equal(groups.length, 8);
  assert.deepEqual(groups.slice(0, 4).map((g) => g.seed), [0, 0, 0, 0]);
  assert.deepEqual(groups[0].cells.map((c) => c.method), ["flexora", "lora", "random-k"]);
  assert.equal(groups[1].regime.epochs, defaultEpochs(128));
  const keys = groups.flatMap((g) => g.cells.map((c) => cellKey(c)));
  assert.equal(new Set(keys).size, keys.length);
  // lora does not depend on flexora's options; the others do.
  const [f, l] = groups[0].cells;
  assert.equal(cellKey({ ...l, flexora: "{}" }), cellKey(l));
  assert.notEqual(cellKey({ ...f, flexora: "{}" }), cellKey(f));
  assert.deepEqual(cellInput(f).search, { lora: { rank: 8, alpha: 16 }, epochs: 2 });
  assert.equal(cellInput(l).search?.epochs, undefined);
  assert.throws(
    () =>
      planGroups({
        ...groups[0],
        tasks: ["a"],
        rows: [0],
        noise: [0],
        shift: ["none"],
        lr: [1],
        rank: [1],
        seeds: [0],
        methods: ["lora"],
        options: {},
        flexora: {},
      }),
    /rows must be positive/,
  );
});

Deno.test("runGroup: every method on the tiny model; a finished cell is read back, not run again", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-study-" });
  try {
    const model = await loadModel(join(FIXTURES, "tiny-llama"));
    const data = await loadDataset(join(FIXTURES, "tiny-data"), { tokenizer: model.tokenizer });
    const [group] = planGroups({
      tasks: ["tiny"],
      rows: [16],
      noise: [0.25],
      shift: ["none"],
      lr: [1e-2],
      rank: [2],
      epochs: 1,
      seeds: [5],
      methods: ["flexora", "lora", "random-k", "grad-top-k"],
      options: { maxLength: 64, search: { loraLr: 1e-2, gateLr: 0.05 } },
      flexora: {},
    });
    const logged: string[] = [];
    const store = await CellStore.open(dir);
    const first = await runGroup({ model, store, testRows: 8, log: (l) => logged.push(l) }, data, group);
    assert.deepEqual(first.map((r) => r.method), ["flexora", "lora", "random-k", "grad-top-k"]);
    const [flexora, lora, randomK, grad] = first;
    const L = model.config.numLayers, k = flexora.layers.length;
    assert.deepEqual(lora.layers, [...Array(L).keys()]);
    assert.deepEqual(randomK.layers, randomLayers(L, k, 5), "random-k: flexora's k, the seed's draw");
    assert.equal(grad.layers.length, k);
    assert.equal(grad.scores!.length, L);
    for (const r of first) {
      assert.equal(r.test.n, 8);
      assert.equal(r.validation!.n, data.validation!.length);
      assert.equal(r.train!.n, 8, "train: the first test-rows of the 16 drawn, as trained");
      assert.ok(r.train!.accuracy >= 0 && r.train!.accuracy <= 1 && Number.isFinite(r.train!.loss));
      assert.ok(r.test.accuracy >= 0 && r.test.accuracy <= 1 && Number.isFinite(r.test.loss));
      assert.ok(r.trainableParams > 0 && r.seconds.retrain > 0);
      assert.equal(r.resolved.retrain.epochs, 1);
    }
    assert.ok(flexora.seconds.search > 0 && lora.seconds.search === 0);
    const lines = (await Deno.readTextFile(join(dir, "cells.jsonl"))).trim().split("\n");
    assert.equal(lines.length, 4);

    // A cut-off last line (a crash mid-write) is skipped; the finished cells are read back and not run again.
    await Deno.writeTextFile(join(dir, "cells.jsonl"), '{"format":1,"key":"cut', { append: true });
    const warnings: string[] = [];
    const reopened = await CellStore.open(dir, (w) => warnings.push(w));
    assert.equal(warnings.length, 1);
    logged.length = 0;
    const again = await runGroup(
      { model, store: reopened, testRows: 8, log: (l) => logged.push(l) },
      data,
      group,
    );
    assert.deepEqual(again, first);
    assert.deepEqual(logged, [], "no cell ran");
    // A new seed runs; its line starts on a fresh line after the cut-off one.
    const [next] = planGroups({ ...groupAxes(group.regime), seeds: [6], methods: ["lora"] });
    await runGroup({ model, store: reopened, testRows: 8 }, data, next);
    const after = await CellStore.open(dir);
    assert.equal(after.all().length, 5);

    // A cell trained under other defaults (here: another gate lr) does not stand for today's: it runs again,
    // and only it (lora's key holds no search options; random-k and grad-top-k ran under today's).
    const text = await Deno.readTextFile(join(dir, "cells.jsonl"));
    const stale = text.split("\n").map((line) => {
      if (!line.includes('"method":"flexora"')) return line;
      const r = JSON.parse(line);
      if (r.method === "flexora") r.resolved.search.gateLr = 0.5;
      return JSON.stringify(r);
    }).join("\n");
    await Deno.writeTextFile(join(dir, "cells.jsonl"), stale);
    const rerun: string[] = [];
    await runGroup(
      { model, store: await CellStore.open(dir), testRows: 8, log: (l) => rerun.push(l) },
      data,
      group,
    );
    assert.deepEqual(rerun.map((l) => / (\S+): acc /.exec(l)?.[1]), ["flexora"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The axes that give `regime` on the tiny task. */
function groupAxes(r: Regime) {
  return {
    tasks: ["tiny"],
    rows: [r.rows],
    noise: [r.noise],
    shift: [r.shift],
    lr: [r.lr],
    rank: [r.rank],
    epochs: r.epochs,
    options: { maxLength: 64, search: { loraLr: 1e-2, gateLr: 0.05 } },
    flexora: {},
  };
}

/** A made-up finished cell. */
function cell(
  task: string,
  rows: number,
  method: Method,
  seed: number,
  accuracy: number,
  params: number,
): CellRecord {
  const regime: Regime = { rows, noise: 0, shift: "none", lr: 1e-3, rank: 8, epochs: defaultEpochs(rows) };
  return {
    format: 1,
    key: `${task} ${rows} ${method} ${seed}`,
    task,
    regime,
    method,
    seed,
    options: "{}",
    flexora: "{}",
    layers: method === "lora" ? [0, 1, 2, 3, 4] : [1, 3],
    trainableParams: params,
    test: { accuracy, loss: 1 - accuracy, n: 200 },
    validation: { accuracy: accuracy - 0.1, loss: 1.1 - accuracy, n: 100 },
    // Only the 32-row cells scored train (as cells from before it did not).
    ...(rows === 32 && { train: { accuracy: 1, loss: 0.01, n: rows } }),
    seconds: { search: method === "flexora" ? 1 : 0, retrain: 10, evaluate: 1 },
    resolved: {} as CellRecord["resolved"],
    finished: "2026-12-06T00:00:00.000Z",
  };
}

Deno.test("choiceLoss: the cross-entropy of the softmax over the choices' log-likelihoods", () => {
  const loss = choiceLoss(
    [{ logprobs: [Math.log(0.5), Math.log(0.25), Math.log(0.25)] }, { logprobs: [-7, -7] }],
    [{ label: 0 }, { label: 1 }],
  );
  assert.ok(Math.abs(loss - Math.LN2) < 1e-12, `got ${loss}`);
});

Deno.test("summaries, table, targets and SVG from finished cells", () => {
  const tasks = ["story-place", "story-object", "story-mood"];
  const records: CellRecord[] = [];
  for (const task of tasks) {
    for (const seed of [0, 1, 2]) {
      const wobble = seed * 0.01;
      records.push(cell(task, 32, "flexora", seed, 0.9 + wobble, 3584));
      records.push(cell(task, 32, "lora", seed, 0.8 + wobble, 8960));
      records.push(
        cell(task, 32, "random-k", seed, task === "story-mood" ? 0.9 + wobble : 0.5 + wobble, 3584),
      );
      records.push(cell(task, 128, "flexora", seed, 0.95 + wobble, 3584));
      records.push(cell(task, 128, "lora", seed, 0.96 + wobble, 8960));
    }
  }
  const summaries = summarize(records);
  assert.equal(summaries.length, 15);
  const place = summaries.find((s) =>
    s.task === "story-place" && s.method === "flexora" && s.regime.rows === 32
  )!;
  assert.deepEqual(place.seeds, [0, 1, 2]);
  assert.ok(Math.abs(place.accuracy.mean - 0.91) < 1e-12);
  assert.deepEqual(place.accuracy, tInterval([0.9, 0.91, 0.92]));
  assert.deepEqual(place.validation, tInterval([0.9 - 0.1, 0.91 - 0.1, 0.92 - 0.1]));

  const table = markdownTable(summaries).split("\n");
  assert.equal(table.length, 2 + 15);
  assert.match(table[0], /\| test loss \(95 % CI\) \| validation accuracy \| train accuracy \| params \|/);
  assert.deepEqual(place.train, tInterval([1, 1, 1]));
  const place128 = summaries.find((s) => s.task === "story-place" && s.regime.rows === 128)!;
  assert.equal(place128.train, undefined, "a row whose cells did not score train has no train interval");
  assert.match(
    table[2],
    /^\| rows 32, lr 0\.001, r 8, 16 ep \| story-mood \| flexora \| - \| 3 \| 0\.910 ± 0\.025 \|/,
  );

  const [beat, small, search] = targets(summaries, tasks);
  assert.match(beat, /met in rows 32, .*\(story-place, story-object\)/);
  assert.match(small, /rows 32, .*: met \(story-place 0\.910 vs 0\.810, 40 %/);
  assert.match(small, /rows 128, .*: not met/);
  assert.match(search, /6 of 6 flexora rows; highest 0\.10/);

  // flexora and random-k both train [1, 3] in every made-up cell; lora trains all five.
  assert.deepEqual(sameLayers(records, "flexora", "random-k"), [9, 9]);
  assert.deepEqual(sameLayers(records, "flexora", "lora"), [0, 18]);

  const svg = accuracySvg(summaries, "test <accuracy>");
  assert.ok(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
  assert.ok(svg.includes("test &lt;accuracy&gt;"));
  // One line per task and method, one point per regime, an error bar per point (three seeds each).
  assert.equal(svg.match(/<polyline/g)?.length, 3 * 3);
  assert.equal(svg.match(/<circle/g)?.length, 15);
  assert.equal(svg.match(/<line [^>]*stroke="#(d62728|1f77b4|7f7f7f)"\/>/g)?.length, 15);
});

Deno.test("plotSelection: today's search where it ran, and every method only where that search ran", () => {
  // A made-up cell whose flexora-side methods ran the search with LoRA lr `loraLr`.
  const searched = (task: string, rows: number, method: Method, seed: number, loraLr: number) => {
    const r = cell(task, rows, method, seed, 0.5, 1000);
    const search = { loraLr, gateLr: 0.01, epochs: 1 } as CellRecord["resolved"]["search"];
    return { ...r, resolved: { ...r.resolved, search } };
  };
  const records: CellRecord[] = [];
  for (const seed of [0, 1]) {
    for (const task of ["story-place", "story-mood"]) {
      for (const rows of [32, 128, 512]) {
        records.push(searched(task, rows, "flexora", seed, 1e-4), searched(task, rows, "lora", seed, 0));
        if (rows < 512) records.push(searched(task, rows, "flexora", seed, 1e-3));
      }
    }
    // All-layer LoRA alone on a task (as a run with --methods lora would leave it), and a noisy regime.
    records.push(searched("winogrande", 32, "lora", seed, 0));
    records.push({
      ...searched("story-place", 32, "flexora", seed, 1e-3),
      regime: { ...records[0].regime, noise: 0.3 },
    });
  }
  const summaries = summarize(records);
  const today = describeSearch({ loraLr: 1e-3, gateLr: 0.01, epochs: 1 } as CellRecord["resolved"]["search"]);
  const now = plotSelection(summaries, () => today)!;
  assert.equal(now.search, today);
  assert.deepEqual([now.lr, now.rank], [1e-3, 8]);
  const points = (p: typeof now) =>
    p.summaries.map((s) => `${s.task} ${s.regime.rows} ${s.method} ${s.searchSettings}`).sort();
  // At 512 rows today's search did not run: no point there, all-layer LoRA's neither; no winogrande panel.
  assert.deepEqual(points(now), [
    `story-mood 128 flexora ${today}`,
    "story-mood 128 lora -",
    `story-mood 32 flexora ${today}`,
    "story-mood 32 lora -",
    `story-place 128 flexora ${today}`,
    "story-place 128 lora -",
    `story-place 32 flexora ${today}`,
    "story-place 32 lora -",
  ]);
  // When today's search never ran, the one run at most points: the 512-row points come back.
  const older = plotSelection(summaries, () => "lr 0.5, gate 0.01, 1 ep")!;
  assert.equal(
    older.search,
    describeSearch({ loraLr: 1e-4, gateLr: 0.01, epochs: 1 } as CellRecord["resolved"]["search"]),
  );
  assert.equal(older.summaries.length, 2 * 3 * 2);
  assert.ok(older.summaries.every((s) => s.task !== "winogrande" && s.regime.noise === 0));
  assert.equal(plotSelection(summaries.filter((s) => s.method === "lora"), () => today), undefined);
});

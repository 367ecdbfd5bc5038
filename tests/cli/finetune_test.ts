import assert from "node:assert/strict";
import { join } from "node:path";
import { readAdapter } from "../../src/model/peft.ts";
import { readConfig } from "../../src/model/config.ts";
import { flexora } from "./run.ts";
import { ROOT } from "../model/shared.ts";

const TINY = join(ROOT, "fixtures/tiny-llama"), DATA = join(ROOT, "fixtures/tiny-data");
const tmp = await Deno.makeTempDir({ prefix: "flexora-finetune-cli-" });
addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
const quick = [
  "--search-lr",
  "1e-2",
  "--gate-lr",
  "0.05",
  "--lr",
  "1e-2",
  "--epochs",
  "1",
  "--max-length",
  "64",
];

/** `finetune --json` on the fixtures with quick settings, writing to `out`, plus `extra` options. */
const finetuneQuick = (out: string, ...extra: string[]) =>
  flexora(
    "finetune",
    "--model",
    TINY,
    "--data",
    DATA,
    "--out",
    out,
    ...extra,
    ...quick,
    "--json",
    "--device",
    "cpu",
  );

Deno.test("finetune --json writes an adapter and prints its summary", async () => {
  const out = join(tmp, "a");
  const r = await finetuneQuick(out);
  assert.equal(r.code, 0, r.err);
  const s = JSON.parse(r.out);
  assert.equal(s.method, "flexora");
  assert.equal(s.adapter, out);
  assert.equal(s.gates.values.length, 3);
  assert.ok(s.selectedLayers.length >= 1);
  assert.equal(typeof s.test.accuracy, "number");
  assert.ok(s.peakRssBytes > 100 * 2 ** 20, `peak RSS ${s.peakRssBytes}`); // the process's, at the end
  const adapter = await readAdapter(out, await readConfig(TINY));
  assert.deepEqual(adapter.config.layers, s.selectedLayers);
  assert.match(r.err, /search \d+\/\d+/); // progress lines on stderr
});

Deno.test("finetune --dtype float16 trains in float16, warns once about the CPU, and records the dtype", async () => {
  const out = join(tmp, "half");
  const r = await finetuneQuick(out, "--dtype", "float16", "--method", "lora");
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err.match(/warning: dtype float16 on the CPU is emulated/g)?.length, 1, r.err);
  assert.equal(JSON.parse(await Deno.readTextFile(join(out, "flexora.json"))).options.dtype, "float16");
});

Deno.test("finetune --method lora --select is ignored for lora; random-k uses top-k", async () => {
  const r = await finetuneQuick(join(tmp, "rk"), "--method", "random-k", "--select", "top-k:2");
  assert.equal(r.code, 0, r.err);
  assert.equal(JSON.parse(r.out).selectedLayers.length, 2);
});

const bad: [string, string[], RegExp, number][] = [
  ["unknown method", ["--method", "dora"], /'method' must be one of flexora, lora, random-k, got "dora"/, 1],
  ["bad select", ["--select", "best"], /Cannot start training: 'select' must be a rule: .*, got "best"/, 1],
  [
    "rank 0",
    ["--rank", "0"],
    /Cannot start training: 'search\.lora\.rank' must be a positive integer, got 0/,
    1,
  ],
  [
    "rank 1e9",
    ["--rank", "1e9"],
    /'search\.lora\.rank' must be at most 16 \(the smallest width .*\), got 1000000000/,
    1,
  ],
  ["unknown target", ["--targets", "q_proj,qkv"], /--targets has 'qkv'/, 2],
  ["negative lr", ["--lr=-3"], /Cannot start training: 'retrain\.lr' must be a positive number, got -3/, 1],
  ["a rank that is not a number", ["--rank", "eight"], /--rank must be a number, got 'eight'/, 2],
  [
    "a batch that is not a multiple of the micro-batch",
    ["--batch-size", "8", "--micro-batch-size", "3"],
    /'retrain\.microBatchSize' must be a divisor of retrain\.batchSize \(8\), got 3/,
    1,
  ],
  ["max length 1", ["--max-length", "1"], /'maxLength' must be an integer >= 2, got 1/, 1],
  [
    "1e9 epochs",
    ["--epochs", "1e9"],
    /'retrain\.epochs' must be an integer in \[1, 1000\], got 1000000000/,
    1,
  ],
  ["model without data", ["--data"], /give both --model and --data, or neither/, 2],
  ["no completion tokens after truncation", ["--max-length", "3"], /no example has completion tokens.*3/i, 1],
];
for (const [name, args, message, code] of bad) {
  Deno.test(`finetune: ${name} fails before training with a message naming the value`, async () => {
    const base = name === "model without data" ? ["--model", TINY] : ["--model", TINY, "--data", DATA];
    const extra = name === "model without data" ? [] : args;
    const r = await flexora(
      "finetune",
      ...base,
      "--out",
      join(tmp, name.replaceAll(" ", "-")),
      ...extra,
      "--device",
      "cpu",
    );
    assert.equal(r.code, code, r.err);
    assert.match(r.err, message);
  });
}

Deno.test("finetune: a validation size past the data fails before training, naming it", async () => {
  const r = await flexora(
    "finetune",
    "--model",
    TINY,
    "--data",
    join(DATA, "train.jsonl"),
    "--out",
    join(tmp, "val-size"),
    "--val-size",
    "64",
    "--device",
    "cpu",
  );
  assert.equal(r.code, 1, r.err);
  assert.match(
    r.err,
    /Cannot start training: 'valSize' must be less than the 64 training examples .*, got 64/,
  );
});

Deno.test("finetune --resume of a folder without run.json says so", async () => {
  const r = await flexora("finetune", "--resume", tmp);
  assert.equal(r.code, 2);
  assert.match(r.err, /no run\.json there/);
});

Deno.test("finetune --val-file takes validation examples from that file", async () => {
  const valFile = join(tmp, "val.jsonl");
  const rows = (await Deno.readTextFile(join(DATA, "validation.jsonl"))).trim().split("\n").slice(0, 5);
  await Deno.writeTextFile(valFile, rows.join("\n") + "\n");
  const r = await finetuneQuick(join(tmp, "val"), "--val-file", valFile);
  assert.equal(r.code, 0, r.err);
  assert.equal(JSON.parse(r.out).validation.n, 5);
});

Deno.test("finetune with no arguments: the base model is wrong on fixtures/first-run, the tuned one right", async () => {
  const out = join(tmp, "first-run");
  const r = await flexora("finetune", "--out", out, "--device", "cpu");
  assert.equal(r.code, 0, r.err);
  const row = (name: string) => r.out.split("\n").find((l) => l.trimStart().startsWith(name))?.trim();
  const [base, tuned] = row("test accuracy")!.split(/\s+/).slice(-2).map(Number);
  assert.ok(base <= 0.3, `base accuracy ${base} (chance is 0.25)`);
  assert.ok(tuned >= 0.9, `tuned accuracy ${tuned}`);
  assert.match(row("layers with LoRA")!, /\[\d(, \d)*\] of 3/);
  assert.match(row("trainable parameters")!, /^trainable parameters\s+-\s+[\d,]+ \([\d.]+ % of [\d,]+\)$/);
  assert.match(row("time")!, /[\d.]+ s$/);
  assert.match(r.out, /generate --model fixtures\/first-run-llama --adapter .*first-run --prompt/);
  assert.match(r.out, /finetune --model [\w-]+\/[\w.-]+ --data fixtures\/first-run/);
});

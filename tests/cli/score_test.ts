/**
 * `flexora score`: multiple-choice accuracy and completion perplexity of JSONL files, and bad data files.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadTokenizer } from "../../src/model/tokenizer.ts";
import { DATA, STORIES } from "../model/shared.ts";
import { flexora, flexoraJson, tempJsonl, TINY, tinyRows } from "./run.ts";

interface ChoiceResult {
  rows: { logprobs: number[]; pred: number }[];
  accuracy: number;
  n: number;
}

const tmp = await Deno.makeTempDir({ prefix: "flexora-score-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
const rows = await tinyRows("test");
const tinyTest = await tempJsonl(tmp, "tiny-test.jsonl", rows);
const score = (model: string, data: string, ...more: string[]) =>
  flexora("score", "--model", model, "--data", data, "--device", "cpu", ...more);

/** Checks the shape of a multiple-choice result and that its accuracy is that of its preds. */
function checkChoices(result: ChoiceResult, labelled: readonly { choices: string[]; label: number }[]): void {
  assert.deepEqual(Object.keys(result).sort(), ["accuracy", "n", "rows"]);
  assert.equal(result.n, labelled.length);
  assert.equal(result.rows.length, labelled.length);
  result.rows.forEach((r, i) => {
    assert.equal(r.logprobs.length, labelled[i].choices.length, `row ${i}`);
    assert.ok(r.logprobs.every((lp) => Number.isFinite(lp) && lp < 0), `row ${i}: ${r.logprobs}`);
    assert.equal(r.pred, r.logprobs.indexOf(Math.max(...r.logprobs)), `row ${i}`);
  });
  const correct = result.rows.filter((r, i) => r.pred === labelled[i].label).length;
  assert.equal(result.accuracy, correct / labelled.length);
}

Deno.test("score --json on multiple-choice rows gives logprobs per choice, pred, accuracy and n", async () => {
  const result = await flexoraJson("score", "--model", TINY, "--data", tinyTest, "--device", "cpu", "--json");
  checkChoices(result as unknown as ChoiceResult, rows);
  const text = await score(TINY, tinyTest);
  assert.equal(text.code, 0, text.err);
  assert.equal(text.out, `accuracy ${(result.accuracy as number).toFixed(4)} on ${rows.length} rows`);
});

Deno.test("score on 40 story-object rows with stories260K: accuracy of its preds, well above chance", async () => {
  const lines = (await Deno.readTextFile(join(DATA, "story-object", "test.jsonl"))).split("\n").slice(0, 40);
  const data = await tempJsonl(tmp, "story-object-40.jsonl", lines);
  const stories = lines.map((l) => JSON.parse(l));
  const result = await flexoraJson("score", "--model", STORIES, "--data", data, "--device", "cpu", "--json");
  checkChoices(result as unknown as ChoiceResult, stories);
  // Zero-shot accuracy on 200 rows is 0.67 (../shared/README.md); chance is 0.25.
  assert.ok((result.accuracy as number) >= 0.45, `accuracy ${result.accuracy}`);
});

Deno.test("rows without a label are scored and left out of the accuracy", async () => {
  const unlabelled = rows.slice(0, 4).map(({ prompt, choices }, i) => i < 2 ? { prompt, choices } : rows[i]);
  const data = await tempJsonl(tmp, "unlabelled.jsonl", unlabelled);
  const result = await flexoraJson("score", "--model", TINY, "--data", data, "--device", "cpu", "--json");
  const preds = (result as unknown as ChoiceResult).rows.map((r) => r.pred);
  assert.equal(result.n, 4);
  assert.equal(result.accuracy, preds.slice(2).filter((p, i) => p === rows[i + 2].label).length / 2);
});

Deno.test("score on completion rows gives nll, perplexity = exp(nll) and the completion token count", async () => {
  const completions = rows.map(({ prompt, completion }) => ({ prompt, completion }));
  const data = await tempJsonl(tmp, "completions.jsonl", completions);
  const result = await flexoraJson("score", "--model", TINY, "--data", data, "--device", "cpu", "--json");
  assert.deepEqual(Object.keys(result).sort(), ["nll", "perplexity", "tokens"]);
  const { nll, perplexity, tokens } = result as { nll: number; perplexity: number; tokens: number };
  const tokenizer = await loadTokenizer(TINY);
  const expected = completions.reduce(
    (n, r) => n + tokenizer.encode(r.prompt + r.completion).length - tokenizer.encode(r.prompt).length,
    0,
  );
  assert.equal(tokens, expected);
  assert.ok(nll > 0 && Number.isFinite(nll), `nll ${nll}`);
  assert.ok(Math.abs(perplexity - Math.exp(nll)) <= 1e-9 * perplexity, `${perplexity} vs exp(${nll})`);
  const text = await score(TINY, data);
  assert.equal(text.out, `nll ${nll.toFixed(4)}, perplexity ${perplexity.toFixed(3)} over ${tokens} tokens`);
});

Deno.test("a completion's nll times its tokens is minus the logprob of the same text as a choice", async () => {
  const { prompt, choices, label } = rows[0];
  const asChoice = await tempJsonl(tmp, "one-choice.jsonl", [{ prompt, choices, label }]);
  const asCompletion = await tempJsonl(tmp, "one-completion.jsonl", [{ prompt, completion: choices[1] }]);
  const mc = await flexoraJson("score", "--model", TINY, "--data", asChoice, "--device", "cpu", "--json");
  const comp = await flexoraJson(
    "score",
    "--model",
    TINY,
    "--data",
    asCompletion,
    "--device",
    "cpu",
    "--json",
  );
  const logprob = (mc as unknown as ChoiceResult).rows[0].logprobs[1];
  const total = (comp.nll as number) * (comp.tokens as number);
  assert.ok(Math.abs(total + logprob) <= 1e-4, `nll·tokens ${total}, logprob ${logprob}`);
});

/** Bad data files: their lines, what stderr must say (beyond the file name), and the exit code. */
const BAD_DATA: { name: string; lines: unknown[]; line?: number; err: RegExp; code: number }[] = [
  { name: "a malformed JSON line", lines: [rows[0], "{not json"], line: 2, err: /not valid JSON/, code: 1 },
  {
    name: "a row with neither choices nor completion",
    lines: [rows[0], rows[1], { prompt: "the sky is" }],
    line: 3,
    err: /expected 'choices' \(multiple choice\) or a string 'completion'/,
    code: 1,
  },
  {
    name: "a row without a prompt",
    lines: [{ completion: " red" }],
    line: 1,
    err: /string 'prompt'/,
    code: 1,
  },
  {
    name: "a label past the choices",
    lines: [rows[0], { ...rows[1], label: 4 }],
    line: 2,
    err: /'label' must index 'choices' \(0\.\.3\), got 4/,
    code: 1,
  },
  {
    name: "a negative label",
    lines: [{ ...rows[0], label: -1 }],
    line: 1,
    err: /'label' must index 'choices' \(0\.\.3\), got -1/,
    code: 1,
  },
  {
    name: "a single choice",
    lines: [{ prompt: "the sky is", choices: [" blue"], label: 0 }],
    line: 1,
    err: /'choices' must be at least two strings/,
    code: 1,
  },
  {
    name: "mixed multiple-choice and completion rows",
    lines: [rows[0], { prompt: rows[1].prompt, completion: rows[1].completion }],
    err: /mixes multiple-choice and completion rows/,
    code: 1,
  },
  { name: "an empty file", lines: [], err: /no rows/, code: 1 },
  { name: "a file of blank lines", lines: ["", "  "], err: /no rows/, code: 1 },
];

for (const [i, c] of BAD_DATA.entries()) {
  Deno.test(`score with ${c.name} exits ${c.code} and names the file${c.line ? ":line" : ""}`, async () => {
    const data = await tempJsonl(tmp, `bad-${i}.jsonl`, c.lines);
    const r = await score(TINY, data, "--json");
    assert.equal(r.code, c.code, r.err);
    assert.equal(r.out, "");
    assert.ok(r.err.includes(c.line ? `${data}:${c.line}:` : `${data}:`), r.err);
    assert.match(r.err, c.err);
  });
}

Deno.test("score with a data file that does not exist exits 1 and names it", async () => {
  const missing = join(tmp, "missing.jsonl");
  const r = await score(TINY, missing);
  assert.equal(r.code, 1);
  assert.ok(r.err.includes(missing), r.err);
});

Deno.test("score without --data or --model exits 2 and names the option", async () => {
  const noData = await flexora("score", "--model", TINY, "--device", "cpu");
  assert.equal(noData.code, 2);
  assert.match(noData.err, /--data is required/);
  const noModel = await flexora("score", "--data", tinyTest, "--device", "cpu");
  assert.equal(noModel.code, 2);
  assert.match(noModel.err, /--model is required/);
});

Deno.test("score --base-dtype bf16 on stories260K: the same predictions, logprobs within 0.3 of float32's", async () => {
  const lines = (await Deno.readTextFile(join(DATA, "story-object", "test.jsonl"))).split("\n").slice(0, 20);
  const data = await tempJsonl(tmp, "story-object-20.jsonl", lines);
  const run = (...more: string[]) =>
    flexoraJson("score", "--model", STORIES, "--data", data, "--device", "cpu", "--json", ...more);
  const [wide, half] = [await run(), await run("--base-dtype", "bf16")] as unknown as ChoiceResult[];
  let max = 0;
  wide.rows.forEach((r, i) =>
    r.logprobs.forEach((lp, j) => max = Math.max(max, Math.abs(lp - half.rows[i].logprobs[j])))
  );
  assert.ok(max > 0 && max <= 0.3, `largest difference ${max}`);
  assert.deepEqual(half.rows.map((r) => r.pred), wide.rows.map((r) => r.pred));
  const bad = await score(TINY, tinyTest, "--base-dtype", "fp8");
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--base-dtype must be one of bf16, f16, f32, got 'fp8'/);
});

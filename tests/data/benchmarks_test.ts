import assert from "node:assert/strict";
import { join } from "node:path";
import { readBoolq, readHellaswag, readPiqa, readWinogrande } from "../../src/data/benchmarks.ts";
import { loadDataset } from "../../src/data/dataset.ts";
import type { Example } from "../../src/data/example.ts";
import { BENCH, jsonl, rejectsNaming, withFiles } from "./helpers.ts";

/** Every example is multiple choice with a label in range, the completion its correct choice. */
function assertChoices(examples: readonly Example[], count: number): void {
  for (const ex of examples) {
    assert.equal(ex.choices?.length, count, ex.source);
    assert.ok(Number.isInteger(ex.label) && ex.label! >= 0 && ex.label! < count, `${ex.source}: ${ex.label}`);
    assert.equal(ex.completion, ex.choices[ex.label!], ex.source);
  }
}

/** The labels' histogram: each label must occur (a reader that always answered 0 would fail). */
function labelCounts(examples: readonly Example[]): number[] {
  const counts: number[] = [];
  for (const ex of examples) counts[ex.label!] = (counts[ex.label!] ?? 0) + 1;
  return counts;
}

Deno.test("PIQA: 1838 validation items as the test split, labels from valid-labels.lst", async () => {
  const dir = join(BENCH, "piqa");
  const data = await loadDataset(dir);
  assert.equal(data.name, "piqa");
  assert.deepEqual([data.train.length, data.validation, data.test?.length], [0, null, 1838]);
  assert.deepEqual(data.files, [join(dir, "valid.jsonl"), join(dir, "valid-labels.lst")]);
  assertChoices(data.test!, 2);
  assert.ok(labelCounts(data.test!).every((n) => n > 500));
  const first = data.test![0];
  assert.equal(first.prompt, "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  assert.ok(
    first.choices![0].startsWith(" Provide the guinea pig with a cage full of a few inches of bedding"),
  );
  assert.ok(first.choices![0].includes("ripped paper strips") && first.choices![1].includes("ripped jeans"));
  assert.equal(first.label, 0); // valid-labels.lst line 1
  assert.equal(first.source, `${join(dir, "valid.jsonl")}:1`);
});

Deno.test("WinoGrande: dev (1267) as test, train_s (640) as train; both choices continue one prompt", async () => {
  const dir = join(BENCH, "winogrande");
  const data = await loadDataset(dir);
  assert.equal(data.name, "winogrande");
  assert.deepEqual([data.train.length, data.validation, data.test?.length], [640, null, 1267]);
  for (const split of [data.train, data.test!]) assertChoices(split, 2);
  const first = data.test![0];
  assert.equal(first.prompt, "Sarah was a much better surgeon than Maria so");
  assert.deepEqual(first.choices, [
    " Sarah always got the easier cases.",
    " Maria always got the easier cases.",
  ]);
  assert.equal(first.label, 1); // answer "2"
  for (const ex of data.test!) {
    assert.ok(!ex.prompt.endsWith(" ") && ex.choices!.every((c) => !c.includes("_")));
  }
  assert.deepEqual((await readWinogrande(join(dir, "train_xs.jsonl"))).length, 160);
});

Deno.test("WinoGrande: labels come from the .lst when rows lack 'answer', and must agree when both exist", async () => {
  const rows = [
    { sentence: "_ is here.", option1: "Ann", option2: "Bob" },
    { sentence: "The cat chased the dog, so the _ ran.", option1: "cat", option2: "dog", answer: "" },
  ];
  await withFiles({ "x.jsonl": jsonl(...rows), "x-labels.lst": "1\n2\n" }, async (dir) => {
    const examples = await readWinogrande(join(dir, "x.jsonl"), join(dir, "x-labels.lst"));
    assert.deepEqual(examples.map((e) => [e.prompt, e.choices, e.label]), [
      ["", ["Ann is here.", "Bob is here."], 0],
      ["The cat chased the dog, so the", [" cat ran.", " dog ran."], 1],
    ]);
    await rejectsNaming(readWinogrande(join(dir, "x.jsonl")), "x.jsonl:1: no 'answer' and no labels file");
  });
  const row = { sentence: "A _ b.", option1: "x", option2: "y", answer: "1" };
  await withFiles({ "x.jsonl": jsonl(row), "x-labels.lst": "2\n" }, async (dir) => {
    await rejectsNaming(
      readWinogrande(join(dir, "x.jsonl"), join(dir, "x-labels.lst")),
      "x.jsonl:1: 'answer' 1 disagrees",
      "x-labels.lst:1 (2)",
    );
  });
});

Deno.test("BoolQ: 3270 dev questions as the test split, choices no / yes", async () => {
  const dir = join(BENCH, "boolq");
  const data = await loadDataset(dir);
  assert.equal(data.name, "boolq");
  assert.deepEqual([data.train.length, data.validation, data.test?.length], [0, null, 3270]);
  assertChoices(data.test!, 2);
  assert.ok(labelCounts(data.test!).every((n) => n > 1000));
  const first = data.test![0];
  assert.ok(first.prompt.startsWith("All biomass goes through at least some of these steps"));
  assert.ok(first.prompt.endsWith("\nQuestion: does ethanol take more energy make that produces?\nAnswer:"));
  assert.deepEqual(first.choices, [" no", " yes"]);
  assert.equal(first.label, 0); // answer false
});

Deno.test("HellaSwag: 10042 items decompressed from bzip2, four endings each", async () => {
  const dir = join(BENCH, "hellaswag");
  const data = await loadDataset(dir);
  assert.equal(data.name, "hellaswag");
  assert.deepEqual([data.train.length, data.validation, data.test?.length], [0, null, 10042]);
  assertChoices(data.test!, 4);
  assert.ok(labelCounts(data.test!).every((n) => n > 2000));
  const first = data.test![0];
  assert.equal(first.prompt, "Roof shingle removal: A man is sitting on a roof. he");
  assert.deepEqual(first.choices, [
    " is using wrap to wrap a pair of skis.",
    " is ripping level tiles off.",
    " is holding a rubik's cube.",
    " starts pulling up roofing on a roof.",
  ]);
  assert.equal(first.label, 3);
  assert.equal(first.source, `${join(dir, "hellaswag_val_full.txt.bz2")}#1`);
  assert.equal(data.test![10041].source, `${join(dir, "hellaswag_val_full.txt.bz2")}#10042`);
});

Deno.test("malformed benchmark rows are DataErrors with file:line or file#item", async () => {
  const piqa = { goal: "g", sol1: "a", sol2: "b" };
  await withFiles({
    "p.jsonl": jsonl(piqa, { ...piqa, sol2: 7 }),
    "p2.jsonl": jsonl(piqa),
    "labels.lst": "0\n1\n",
    "bad-labels.lst": "0\n2\n",
    "word-labels.lst": "zero\n",
    "w.jsonl": jsonl({ sentence: "no blank here", option1: "a", option2: "b", answer: "1" }),
    "w2.jsonl": jsonl({ sentence: "a _ b", option1: "a", option2: "b", answer: "3" }),
    "b.jsonl": jsonl({ question: "q", passage: "p", answer: "yes" }),
    "h.txt": "ctx\n0\na\nb\nc\nd\nctx\n4\na\nb\nc\nd\n",
    "h5.txt": "ctx\n0\na\nb\nc\n",
    "h.txt.bz2": "BZh9 not really",
  }, async (dir) => {
    const at = (name: string) => join(dir, name);
    await rejectsNaming(
      readPiqa(at("p.jsonl"), at("labels.lst")),
      `${at("p.jsonl")}:2: 'sol2' must be a string, got 7`,
    );
    await rejectsNaming(
      readPiqa(at("p.jsonl"), at("bad-labels.lst")),
      `${at("bad-labels.lst")}:2: label must be 0 or 1, got 2`,
    );
    await rejectsNaming(
      readPiqa(at("p2.jsonl"), at("labels.lst")),
      `${at("labels.lst")}: 2 labels for the 1 rows`,
    );
    await rejectsNaming(
      readPiqa(at("p2.jsonl"), at("word-labels.lst")),
      `${at("word-labels.lst")}:1: expected an integer label, got "zero"`,
    );
    await rejectsNaming(
      readWinogrande(at("w.jsonl")),
      `${at("w.jsonl")}:1: 'sentence' must contain exactly one '_'`,
    );
    await rejectsNaming(
      readWinogrande(at("w2.jsonl")),
      `${at("w2.jsonl")}:1: 'answer' must be "1" or "2", got "3"`,
    );
    await rejectsNaming(
      readBoolq(at("b.jsonl")),
      `${at("b.jsonl")}:1: 'answer' must be a boolean, got "yes"`,
    );
    await rejectsNaming(readHellaswag(at("h.txt")), `${at("h.txt")}#2: gold index must be 0-3, got "4"`);
    await rejectsNaming(readHellaswag(at("h5.txt")), `${at("h5.txt")}: 5 lines, not 6 per item`);
    await rejectsNaming(readHellaswag(at("h.txt.bz2")), `${at("h.txt.bz2")}: not valid bzip2 data`);
  });
});

Deno.test("benchmark folders are recognized by their files; other folders by train.jsonl", async () => {
  const piqa = { goal: "g", sol1: "a", sol2: "b" };
  await withFiles({ "valid.jsonl": jsonl(piqa), "valid-labels.lst": "1\n" }, async (dir) => {
    assert.equal((await loadDataset(dir)).test?.[0].completion, " b");
  });
  // valid.jsonl without labels is a plain validation split.
  await withFiles(
    { "train.jsonl": jsonl({ text: "t" }), "valid.jsonl": jsonl({ text: "v" }) },
    async (dir) => {
      assert.equal((await loadDataset(dir)).validation?.[0].completion, "v");
    },
  );
  await withFiles({ "dev.jsonl": jsonl({ question: "q", passage: "p", answer: true }) }, async (dir) => {
    assert.equal((await loadDataset(dir)).test?.[0].completion, " yes");
  });
  await withFiles({ "dev.jsonl": "", "dev-labels.lst": "" }, async (dir) => {
    await rejectsNaming(loadDataset(dir), dir, "the test split of winogrande is empty");
  });
});

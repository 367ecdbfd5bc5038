import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { carveValidation, loadDataset } from "../../src/data/dataset.ts";
import type { Example } from "../../src/data/example.ts";
import { DATA, jsonl, rejectsNaming, throwsNaming, TINY_DATA, withFiles } from "./helpers.ts";

/** SHA-256 hex of the files' bytes, in order, computed here independently. */
async function sha256(files: readonly string[]): Promise<string> {
  const hash = createHash("sha256");
  for (const file of files) hash.update(await Deno.readFile(file));
  return hash.digest("hex");
}

Deno.test("story-object loads 2000 / 200 / 500 examples with sources, files and hash", async () => {
  const dir = join(DATA, "story-object");
  const data = await loadDataset(dir);
  assert.equal(data.name, "story-object");
  assert.deepEqual([data.train.length, data.validation?.length, data.test?.length], [2000, 200, 500]);
  assert.deepEqual(data.files, ["train.jsonl", "validation.jsonl", "test.jsonl"].map((f) => join(dir, f)));
  assert.equal(data.hash, await sha256(data.files));
  assert.equal(data.train[0].source, `${join(dir, "train.jsonl")}:1`);
  assert.equal(data.test![499].source, `${join(dir, "test.jsonl")}:500`);
  for (const ex of [...data.train, ...data.validation!, ...data.test!]) {
    assert.equal(ex.choices?.length, 4);
    assert.equal(ex.completion, ex.choices[ex.label!]);
  }
  const again = await loadDataset(dir);
  assert.equal(again.hash, data.hash);
  assert.notEqual((await loadDataset(join(DATA, "story-place"))).hash, data.hash);
});

Deno.test("a JSONL file is a train-only dataset named after the file", async () => {
  const file = join(TINY_DATA, "train.jsonl");
  const data = await loadDataset(file);
  assert.equal(data.name, "train");
  assert.equal(data.validation, null);
  assert.equal(data.test, null);
  assert.deepEqual(data.files, [file]);
  assert.equal(data.train.length, (await Deno.readTextFile(file)).trim().split("\n").length);
  assert.equal(data.hash, await sha256([file]));
});

Deno.test("a folder's validation split may be named validation, valid or dev; test is optional", async () => {
  for (const name of ["validation.jsonl", "valid.jsonl", "dev.jsonl"]) {
    await withFiles(
      { "train.jsonl": jsonl({ text: "a" }, { text: "b" }), [name]: jsonl({ text: "c" }) },
      async (dir) => {
        const data = await loadDataset(dir);
        assert.deepEqual(data.validation?.map((e) => e.completion), ["c"]);
        assert.equal(data.test, null);
        assert.deepEqual(data.files, [join(dir, "train.jsonl"), join(dir, name)]);
      },
    );
  }
  await withFiles(
    { "train.jsonl": jsonl({ text: "a" }), "test.jsonl": jsonl({ text: "t" }) },
    async (dir) => {
      const data = await loadDataset(dir);
      assert.equal(data.validation, null);
      assert.deepEqual(data.test?.map((e) => e.completion), ["t"]);
    },
  );
});

Deno.test("an empty split is a DataError saying which split is empty", async () => {
  const cases: [Record<string, string>, string, string][] = [
    [{ "train.jsonl": "\n\n" }, "train.jsonl", "the train split is empty"],
    [{ "train.jsonl": jsonl({ text: "a" }), "dev.jsonl": "" }, "dev.jsonl", "the validation split is empty"],
    [{ "train.jsonl": jsonl({ text: "a" }), "test.jsonl": " \n" }, "test.jsonl", "the test split is empty"],
  ];
  for (const [files, file, message] of cases) {
    await withFiles(files, async (dir) => await rejectsNaming(loadDataset(dir), join(dir, file), message));
  }
  await withFiles({ "empty.jsonl": "" }, async (dir) => {
    await rejectsNaming(loadDataset(join(dir, "empty.jsonl")), "empty.jsonl", "the train split is empty");
  });
});

Deno.test("a missing path, a folder without train.jsonl and two validation files are DataErrors", async () => {
  const nowhere = join(DATA, "no-such-dataset");
  await rejectsNaming(loadDataset(nowhere), nowhere, "no such file or folder");
  await withFiles({ "test.jsonl": jsonl({ text: "a" }) }, async (dir) => {
    await rejectsNaming(loadDataset(dir), dir, "no train.jsonl");
  });
  const files = { "train.jsonl": jsonl({ text: "a" }), "valid.jsonl": jsonl({ text: "b" }) };
  await withFiles({ ...files, "dev.jsonl": jsonl({ text: "c" }) }, async (dir) => {
    await rejectsNaming(loadDataset(dir), "validation split is in valid.jsonl and dev.jsonl");
  });
});

const examples: Example[] = Array.from({ length: 50 }, (_, i) => ({
  prompt: "",
  completion: `${i}`,
  source: `t:${i + 1}`,
}));

Deno.test("carveValidation is deterministic per seed, disjoint, complete and keeps the order", () => {
  const a = carveValidation(examples, 10, 3), b = carveValidation(examples, 10, 3);
  assert.deepEqual(a, b);
  assert.equal(a.validation.length, 10);
  assert.equal(a.train.length, 40);
  const inValidation = new Set(a.validation);
  assert.ok(a.train.every((ex) => !inValidation.has(ex)), "the splits share an example");
  assert.deepEqual(new Set([...a.train, ...a.validation]), new Set(examples));
  const index = (ex: Example) => examples.indexOf(ex);
  for (const split of [a.train, a.validation]) {
    assert.ok(split.every((ex, i) => i === 0 || index(split[i - 1]) < index(ex)), "order changed");
  }
  assert.notDeepEqual(carveValidation(examples, 10, 4).validation, a.validation);
});

Deno.test("carveValidation needs 0 < size < train length", () => {
  throwsNaming(() => carveValidation(examples, 50, 0), "cannot carve 50 validation examples off 50");
  throwsNaming(() => carveValidation(examples, 0, 0), "'size' must be a positive integer, got 0");
  throwsNaming(() => carveValidation(examples, 1.5, 0), "got 1.5");
  assert.equal(carveValidation(examples, 49, 0).train.length, 1);
});

Deno.test("a FIFO is not a dataset: refused at once, naming it, instead of a read that never ends", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-fifo-" });
  try {
    const fifo = join(dir, "train.jsonl");
    await new Deno.Command("mkfifo", { args: [fifo] }).output();
    await assert.rejects(loadDataset(fifo), new RegExp(`${fifo}: not a regular file`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../src/data/dataset.ts";
import { alpacaPrompt, toExample } from "../../src/data/example.ts";
import { loadTokenizer } from "../../src/model/tokenizer.ts";
import { chatTokenizer, jsonl, rejectsNaming, throwsNaming, TINY_LLAMA, withFiles } from "./helpers.ts";

Deno.test("{prompt, completion} rows keep both texts and their source", () => {
  const ex = toExample({ prompt: "the sea is", completion: " blue", extra: 1 }, "f.jsonl:4");
  assert.deepEqual(ex, { prompt: "the sea is", completion: " blue", source: "f.jsonl:4" });
});

Deno.test("multiple-choice rows: the completion is the correct choice, or the row's own completion", () => {
  const row = { prompt: "Q:", choices: [" a", " b", " c"], label: 2 };
  assert.deepEqual(toExample(row, "f:1"), { ...row, completion: " c", source: "f:1" });
  const both = toExample({ ...row, completion: " C" }, "f:2");
  assert.equal(both.completion, " C");
  assert.equal(both.label, 2);
  const unlabelled = toExample({ prompt: "Q:", choices: [" a", " b"], completion: " a" }, "f:3");
  assert.equal(unlabelled.label, undefined);
  assert.ok(!("label" in unlabelled));
});

Deno.test("Alpaca rows use the Stanford Alpaca prompt, with and without input", () => {
  const withInput = toExample({ instruction: "Add.", input: "2 and 2", output: "4" }, "a:1");
  assert.equal(withInput.prompt, alpacaPrompt("Add.", "2 and 2"));
  assert.ok(withInput.prompt.endsWith("### Instruction:\nAdd.\n\n### Input:\n2 and 2\n\n### Response:\n"));
  assert.equal(withInput.completion, "4");
  for (
    const row of [{ instruction: "Say hi.", output: "hi" }, {
      instruction: "Say hi.",
      input: "",
      output: "hi",
    }]
  ) {
    const ex = toExample(row, "a:2");
    assert.equal(ex.prompt, alpacaPrompt("Say hi."));
    assert.ok(ex.prompt.endsWith("### Instruction:\nSay hi.\n\n### Response:\n"));
    assert.ok(!ex.prompt.includes("### Input:"));
  }
});

Deno.test("{text} rows: empty prompt, the whole text is the completion", () => {
  assert.deepEqual(toExample({ text: "Once upon a time." }, "t:1"), {
    prompt: "",
    completion: "Once upon a time.",
    source: "t:1",
  });
});

Deno.test("chat rows: earlier messages through the chat template form the prompt, the last is the completion", async () => {
  const tokenizer = await chatTokenizer();
  const messages = [
    { role: "system", content: "be brief" },
    { role: "user", content: "the sea ?" },
    { role: "assistant", content: "blue" },
    { role: "user", content: "the sun ?" },
    { role: "assistant", content: "yellow" },
  ];
  const ex = toExample({ messages }, "c:1", tokenizer);
  assert.equal(ex.prompt, tokenizer.applyChatTemplate(messages.slice(0, -1), { addGenerationPrompt: true }));
  assert.equal(
    ex.prompt,
    "<|system|>be brief</s>\n<|user|>the sea ?</s>\n<|assistant|>blue</s>\n<|user|>the sun ?</s>\n<|assistant|>",
  );
  assert.equal(ex.completion, "yellow");
});

Deno.test("chat rows need a tokenizer that has a chat template", async () => {
  const row = { messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }] };
  throwsNaming(() => toExample(row, "c:2"), "c:2: ", "needs a tokenizer");
  const plain = await loadTokenizer(TINY_LLAMA);
  throwsNaming(
    () => toExample(row, "c:3", plain),
    "c:3: cannot render the chat template",
    "no chat template",
  );
});

/** Malformed rows and a part of the reason each must give. */
const MALFORMED: [unknown, string][] = [
  [42, "expected a JSON object, got 42"],
  [["prompt"], "expected a JSON object"],
  [null, "expected a JSON object, got null"],
  [{ question: "?" }, "a row of no known form (keys: 'question')"],
  [{ prompt: "only a prompt" }, "a row of no known form (keys: 'prompt')"],
  [{ prompt: 1, completion: "x" }, "'prompt' must be a string, got 1"],
  [{ prompt: "p", completion: null }, "'completion' must be a string, got null"],
  [{ prompt: "p", completion: "" }, "'completion' is empty"],
  [{ text: "" }, "'text' is empty"],
  [{ text: ["a"] }, `'text' must be a string, got ["a"]`],
  [
    { prompt: "p", choices: "a b", label: 0 },
    `'choices' must be an array of at least two strings, got "a b"`,
  ],
  [{ prompt: "p", choices: [" a"], label: 0 }, "at least two strings"],
  [{ prompt: "p", choices: [" a", 2], label: 0 }, "at least two strings"],
  [
    { prompt: "p", choices: [" a", " b"], label: 2 },
    "'label' must be an integer index into 'choices' (0..1), got 2",
  ],
  [{ prompt: "p", choices: [" a", " b"], label: "1" }, `got "1"`],
  [
    { prompt: "p", choices: [" a", " b"] },
    "'label' must be an integer index into 'choices' (0..1), got nothing",
  ],
  [{ prompt: "p", choices: [" a", ""], label: 1 }, "the correct choice (1) is empty"],
  [{ instruction: "do", output: 3 }, "'output' must be a string, got 3"],
  [{ instruction: "do", input: 5, output: "x" }, "'input' must be a string, got 5"],
  [{ messages: [] }, "'messages' must be an array of at least two messages, got []"],
  [
    { messages: [{ role: "user", content: "hi" }, { role: "assistant" }] },
    "'messages[1]' must be {role: string",
  ],
  [{ messages: [{ role: "assistant", content: "a" }, { role: "user", content: "b" }] }, `got role "user"`],
  [
    { messages: [{ role: "user", content: "a" }, { role: "assistant", content: "" }] },
    "last (assistant) message is empty",
  ],
];

Deno.test("each malformed row is a DataError giving file:line and the reason", async () => {
  const tokenizer = await chatTokenizer();
  const good = { prompt: "p", completion: " c" };
  for (const [row, reason] of MALFORMED) {
    // Line 1 good, line 2 blank, line 3 the bad row: the error must say line 3.
    await withFiles({ "train.jsonl": `${JSON.stringify(good)}\n\n${JSON.stringify(row)}\n` }, async (dir) => {
      const file = join(dir, "train.jsonl");
      await rejectsNaming(loadDataset(dir, { tokenizer }), `${file}:3: `, reason);
    });
  }
});

Deno.test("a line that is not JSON is a DataError giving file:line", async () => {
  await withFiles({ "data.jsonl": jsonl({ text: "ok" }) + "{not json\n" }, async (dir) => {
    await rejectsNaming(loadDataset(join(dir, "data.jsonl")), `${join(dir, "data.jsonl")}:2: not valid JSON`);
  });
});

Deno.test("long values are cut to 60 characters in error messages", () => {
  const long = "x".repeat(500).split("");
  throwsNaming(
    () => toExample({ prompt: "p", completion: long }, "f:1"),
    `got ${JSON.stringify(long).slice(0, 57)}...`,
  );
  assert.throws(
    () => toExample({ prompt: "p", completion: long }, "f:1"),
    (e: Error) => e.message.length < 120,
  );
});

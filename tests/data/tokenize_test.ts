import assert from "node:assert/strict";
import { loadDataset } from "../../src/data/dataset.ts";
import type { Example } from "../../src/data/example.ts";
import { tokenizeExamples } from "../../src/data/tokenize.ts";
import { batchFeeds, countTargets } from "../../src/data/sequence.ts";
import { loadTokenizer, type Tokenizer } from "../../src/model/tokenizer.ts";
import { throwsNaming, TINY_DATA, TINY_LLAMA } from "./helpers.ts";

const tokenizer: Tokenizer = await loadTokenizer(TINY_LLAMA);
const ex = (prompt: string, completion: string, line = 1): Example => ({
  prompt,
  completion,
  source: `m:${line}`,
});

Deno.test("ids are encode(prompt + completion), targets start at encode(prompt).length", async () => {
  const { train } = await loadDataset(TINY_DATA);
  const set = tokenizeExamples(train, tokenizer, { maxLength: 128 });
  assert.equal(set.sequences.length, train.length);
  assert.deepEqual([set.truncated, set.dropped], [0, 0]);
  train.forEach((example, i) => {
    const seq = set.sequences[i];
    assert.deepEqual(seq.ids, tokenizer.encode(example.prompt + example.completion));
    assert.equal(seq.targetFrom, tokenizer.encode(example.prompt).length);
    assert.equal(seq.ids[0], tokenizer.bosTokenId);
    // The targets decode to the completion.
    assert.equal(tokenizer.decode(seq.ids.slice(seq.targetFrom)), example.completion.trim());
  });
  // `tokens` is what batchFeeds makes targets of.
  assert.equal(set.tokens, countTargets(batchFeeds(set.sequences).labels));
  // A {text} example (empty prompt): every token after BOS is a target.
  const text = tokenizeExamples([ex("", "the sea is blue")], tokenizer, { maxLength: 16 });
  assert.equal(text.sequences[0].targetFrom, 1);
  assert.equal(text.tokens, text.sequences[0].ids.length - 1);
});

Deno.test("appendEos adds the tokenizer's EOS as one more target", () => {
  const examples = [ex("the color of the sea is", " blue")];
  const plain = tokenizeExamples(examples, tokenizer, { maxLength: 64 });
  const eos = tokenizeExamples(examples, tokenizer, { maxLength: 64, appendEos: true });
  assert.deepEqual(eos.sequences[0].ids, [...plain.sequences[0].ids, tokenizer.eosTokenId]);
  assert.equal(eos.sequences[0].targetFrom, plain.sequences[0].targetFrom);
  assert.equal(eos.tokens, plain.tokens + 1);
});

Deno.test("truncation cuts from the end, keeps what completion is left, drops what has none", () => {
  const long = ex("the color of the sea is", " blue is the color", 1);
  const promptLength = tokenizer.encode(long.prompt).length;
  const fullLength = tokenizer.encode(long.prompt + long.completion).length;
  assert.ok(fullLength - promptLength >= 3, "the completion must have several tokens for this test");
  const short = ex("the sea is", " blue", 2);
  const shortLength = tokenizer.encode(short.prompt + short.completion).length;
  const maxLength = promptLength + 1;
  assert.ok(shortLength <= maxLength);
  const set = tokenizeExamples([long, short], tokenizer, { maxLength });
  assert.deepEqual([set.truncated, set.dropped, set.sequences.length], [1, 0, 2]);
  assert.deepEqual(set.sequences[0].ids, tokenizer.encode(long.prompt + long.completion).slice(0, maxLength));
  assert.equal(set.tokens, 1 + (shortLength - tokenizer.encode(short.prompt).length));
  // At the prompt's own length nothing of the long completion is left: truncated and dropped.
  const cut = tokenizeExamples([long, short], tokenizer, { maxLength: promptLength, appendEos: true });
  assert.deepEqual([cut.truncated, cut.dropped, cut.sequences.length], [1, 1, 1]);
  assert.equal(cut.sequences[0].ids.at(-1), tokenizer.eosTokenId);
});

Deno.test("when every example is dropped, the error gives maxLength", () => {
  const examples = [ex("the color of the sea is", " blue", 1), ex("the color of the apple is", " red", 2)];
  throwsNaming(
    () => tokenizeExamples(examples, tokenizer, { maxLength: 4 }),
    "no example has completion tokens after truncation to maxLength 4",
    "all 2 dropped",
  );
  assert.throws(
    () => tokenizeExamples(examples, tokenizer, { maxLength: 0 }),
    /'maxLength' must be .* got 0/,
  );
  assert.deepEqual(tokenizeExamples([], tokenizer, { maxLength: 8 }).sequences, []);
});

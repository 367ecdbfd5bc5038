/**
 * Incremental text with stop strings, and log-probabilities, against brute-force references.
 */

import assert from "node:assert/strict";
import { loadModel } from "../../../src/model/model.ts";
import { Detokenizer } from "../../../src/serve/embedded/detokenize.ts";
import { tokenLogprob } from "../../../src/serve/embedded/logprobs.ts";
import { Rng } from "../../../src/util/random.ts";
import { STORIES, STORIES_GOLDEN } from "./helpers.ts";

const stories = await loadModel(STORIES);

/** Streams `ids` through a Detokenizer; returns the deltas, the final text and the stop string. */
function run(ids: number[], stop: string[], prompt: number[] = [1]) {
  const d = new Detokenizer(stories.tokenizer, stop, prompt);
  const deltas = ids.map((id) => d.push(id));
  deltas.push(d.finish());
  return { deltas, text: d.text, stop: d.stopString };
}

Deno.test("detokenizer: deltas add up to the decoded text; after a prompt, its space is kept", () => {
  const whole = stories.tokenizer.decode(STORIES_GOLDEN, { skipSpecialTokens: true });
  const { deltas, text, stop } = run(STORIES_GOLDEN, []);
  assert.equal(deltas.join(""), whole);
  assert.equal(text, whole);
  assert.equal(stop, null);
  assert.ok(deltas.slice(0, -1).every((d) => d !== ""), "no stop strings: nothing held back");
  const prompt = [1, ...STORIES_GOLDEN.slice(0, 4)]; // "Once upon a time"
  const after = run(STORIES_GOLDEN.slice(4), [], prompt);
  assert.equal("Once upon a time" + after.text, whole);
  assert.ok(after.text.startsWith(","), after.text);
  assert.equal(run(STORIES_GOLDEN.slice(2, 4), [], prompt.slice(0, 3)).text, " a time");
});

Deno.test("detokenizer: the text ends before the first stop string, which no delta ever shows", () => {
  const whole = stories.tokenizer.decode(STORIES_GOLDEN, { skipSpecialTokens: true });
  for (const stops of [["little"], ["Lily", "there was"], ["lit", "little girl"], ["zzz"]]) {
    const { deltas, text, stop } = run(STORIES_GOLDEN, stops);
    const hits = stops.map((s) => whole.indexOf(s)).filter((i) => i >= 0);
    const end = hits.length ? Math.min(...hits) : whole.length;
    assert.equal(text, whole.slice(0, end), stops.join("|"));
    assert.equal(deltas.join(""), text);
    assert.equal(stop, hits.length ? stops.find((s) => whole.indexOf(s) === end) : null);
    let streamed = "";
    for (const d of deltas) {
      streamed += d;
      assert.ok(stops.every((s) => !streamed.includes(s)), streamed);
    }
  }
});

Deno.test("detokenizer: a trailing half character (U+FFFD) is held until it completes", () => {
  const pieces = ["ab", "\uFFFD", "é", "!"];
  const tokenizer = {
    vocabSize: pieces.length,
    // Token 1 alone is half a character; followed by token 2 the pair decodes to "é".
    decode: (ids: readonly number[]) =>
      ids.map((id, k) => id === 1 && ids[k + 1] === 2 ? "" : pieces[id]).join(""),
  };
  const d = new Detokenizer(tokenizer);
  assert.deepEqual([d.push(0), d.push(1), d.push(2), d.push(3), d.finish()], ["ab", "", "é", "!", ""]);
  const ids = new Detokenizer(tokenizer);
  assert.equal(ids.push(7) + ids.finish(), "", "ids past the tokenizer's vocabulary have no text");
});

Deno.test("tokenLogprob: equals a float64 log-softmax, and its top ids are the sorted order", () => {
  const rng = new Rng(5);
  const logits = Float32Array.from({ length: 300 }, () => rng.normal() * 4);
  logits[17] = logits[42]; // a tie
  const max = Math.max(...logits);
  const logZ = max + Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
  const order = [...logits.keys()].sort((a, b) => logits[b] - logits[a]);
  for (const top of [0, 1, 5, 20]) {
    const lp = tokenLogprob(logits, 99, top);
    assert.ok(Math.abs(lp.logprob - (logits[99] - logZ)) < 1e-12);
    assert.deepEqual(lp.top.map((t) => logits[t.id]), order.slice(0, top).map((i) => logits[i]));
    assert.ok(lp.top.every((t) => Math.abs(t.logprob - (logits[t.id] - logZ)) < 1e-12));
  }
  const certain = tokenLogprob(new Float32Array([0, -1e5]), 1, 2);
  assert.equal(certain.logprob, -9999, "minus infinity is clamped as OpenAI does");
});

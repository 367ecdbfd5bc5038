/**
 * `/v1/completions` on stories260K against the golden greedy ids and probabilities, plus prompts, stop strings,
 * sampling, and the error bodies of bad requests.
 */

import assert from "node:assert/strict";
import { loadModel } from "../../../src/model/model.ts";
import { createEmbeddedApp } from "../../../src/serve/embedded/app.ts";
import { post, postJson, STORIES, STORIES_GOLDEN } from "./helpers.ts";

const model = await loadModel(STORIES);
const server = createEmbeddedApp({ model });
const { app } = server;
const decode = (ids: number[]) => model.tokenizer.decode(ids, { skipSpecialTokens: true });
const complete = (body: Record<string, unknown>) =>
  postJson(app, "/v1/completions", { model: "stories260K", ...body });

Deno.test("completions: greedy from token ids [1] gives the golden 32 ids and their text", async () => {
  const { status, body } = await complete({
    prompt: [1],
    max_tokens: 32,
    temperature: 0,
    logprobs: 0,
    return_tokens_as_token_ids: true,
  });
  assert.equal(status, 200);
  assert.equal(body.object, "text_completion");
  assert.equal(body.model, "stories260K");
  assert.match(body.id, /^cmpl-[0-9a-f]{32}$/);
  const [choice] = body.choices;
  assert.deepEqual(choice.logprobs.tokens, STORIES_GOLDEN.map((id) => `token_id:${id}`));
  assert.equal(choice.text, decode(STORIES_GOLDEN));
  assert.equal(choice.finish_reason, "length");
  assert.deepEqual(body.usage, { prompt_tokens: 1, completion_tokens: 32, total_tokens: 33 });
});

Deno.test("completions: logprobs are log-softmax of the logits (golden p(403 | [1]) = 0.7837), all <= 0", async () => {
  const { body } = await complete({ prompt: [1], max_tokens: 6, temperature: 0, logprobs: 5 });
  const lp = body.choices[0].logprobs;
  assert.equal(lp.token_logprobs.length, 6);
  // The golden probability is rounded to 4 decimals.
  assert.ok(
    Math.abs(Math.exp(lp.token_logprobs[0]) - 0.7837) <= 1e-4,
    `p = ${Math.exp(lp.token_logprobs[0])}`,
  );
  for (const [k, top] of lp.top_logprobs.entries()) {
    assert.ok(lp.token_logprobs[k] <= 0);
    const values = Object.values(top) as number[];
    assert.ok(values.length >= 5 && values.every((v) => v <= 0));
    // Greedy: the chosen token is the most likely one.
    assert.equal(top[lp.tokens[k]], Math.max(...values));
    assert.equal(lp.token_logprobs[k], Math.max(...values));
  }
  const golden = ["Once", "One"].map((w) => lp.top_logprobs[0][w]);
  assert.ok(Math.abs(Math.exp(golden[1]) - 0.1555) <= 1e-4, `p(One) = ${Math.exp(golden[1])}`);
  assert.deepEqual(lp.text_offset.slice(0, 2), [0, lp.tokens[0].length]);
});

Deno.test("completions: a string prompt continues with the text after the prompt's own, spaces kept", async () => {
  const prompt = "Once upon a time";
  assert.deepEqual(model.tokenizer.encode(prompt), [1, ...STORIES_GOLDEN.slice(0, 4)]);
  for (const p of [prompt, [prompt], [[1, ...STORIES_GOLDEN.slice(0, 4)]]]) {
    const { body } = await complete({ prompt: p, max_tokens: 5, temperature: 0 });
    assert.equal(body.choices[0].text, decode(STORIES_GOLDEN.slice(0, 9)).slice(prompt.length));
    assert.equal(body.choices[0].text, ", there was a little");
  }
});

Deno.test("completions: a stop string ends the text before it, with finish_reason and stop_reason", async () => {
  const { body } = await complete({ prompt: [1], max_tokens: 32, temperature: 0, stop: ["xyz", "little"] });
  const full = decode(STORIES_GOLDEN);
  assert.equal(body.choices[0].text, full.slice(0, full.indexOf("little")));
  assert.equal(body.choices[0].finish_reason, "stop");
  assert.equal(body.choices[0].stop_reason, "little");
  assert.ok(body.usage.completion_tokens < 32);
});

Deno.test("completions: stop_token_ids end generation with finish_reason stop", async () => {
  const { body } = await complete({ prompt: [1], max_tokens: 32, temperature: 0, stop_token_ids: [261] });
  assert.equal(body.choices[0].text, decode(STORIES_GOLDEN.slice(0, 2)));
  assert.equal(body.choices[0].finish_reason, "stop");
  assert.equal(body.usage.completion_tokens, 3, "the stop token counts, as in vLLM");
});

Deno.test("completions: sampling is reproducible for a seed and follows top_p", async () => {
  const sampled = { prompt: "Once upon a time", max_tokens: 12, temperature: 1.3, top_p: 0.9 };
  const a = await complete({ ...sampled, seed: 7 });
  const b = await complete({ ...sampled, seed: 7 });
  assert.equal(a.body.choices[0].text, b.body.choices[0].text);
  const seeds = await Promise.all([1, 2, 3, 4].map((seed) => complete({ ...sampled, seed })));
  assert.ok(
    new Set(seeds.map((r) => r.body.choices[0].text)).size > 1,
    "different seeds, some different text",
  );
  // top_p so small that only the most likely token is left: sampling becomes greedy.
  const nucleus = await complete({ prompt: [1], max_tokens: 8, temperature: 1, top_p: 1e-6, seed: 3 });
  assert.equal(nucleus.body.choices[0].text, decode(STORIES_GOLDEN.slice(0, 8)));
});

Deno.test("completions: an unknown model is vLLM's 404", async () => {
  const { status, body } = await complete({ model: "gpt-4", prompt: "hi" });
  assert.equal(status, 404);
  assert.deepEqual(body, {
    error: { message: "The model `gpt-4` does not exist.", type: "NotFoundError", param: "model", code: 404 },
  });
});

Deno.test("completions: a body that is not JSON, or not an object, is a 400 JSON error", async () => {
  for (const raw of ["{not json", "[1, 2]", "null", ""]) {
    const res = await post(app, "/v1/completions", raw);
    assert.equal(res.status, 400, raw);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    const { error } = await res.json();
    assert.equal(error.type, "BadRequestError");
    assert.equal(error.code, 400);
    assert.match(error.message, /request body/);
  }
});

Deno.test("completions: bad fields are 400s naming the field and the value", async () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ prompt: [1], max_tokens: 0 }, "max_tokens", /'max_tokens' must be an integer >= 1, got 0/],
    [{ prompt: [1], temperature: -1 }, "temperature", /got -1/],
    [{ prompt: [1], top_p: 0 }, "top_p", /'top_p' must be a number > 0 <= 1, got 0/],
    [{ prompt: [1], logprobs: 21 }, "logprobs", /<= 20, got 21/],
    [{ prompt: [1], n: 2 }, "n", /'n' is not supported/],
    [{ prompt: [1, 600] }, "prompt", /'prompt' has 600; token ids must be integers in 0\.\.511/],
    [{ prompt: ["a", "b"] }, "prompt", /holds 2 prompts/],
    [{ prompt: [] }, "prompt", /at least one token/],
    [{ prompt: 5 }, "prompt", /must be a string or a list of token ids, got 5/],
    [{ prompt: [1], stop: [1] }, "stop", /'stop' must be a string or a list of strings/],
  ];
  for (const [fields, param, message] of cases) {
    const { status, body } = await complete(fields);
    assert.equal(status, 400, JSON.stringify(fields));
    assert.equal(body.error.param, param);
    assert.match(body.error.message, message);
  }
});

Deno.test("completions: prompt plus max_tokens past the context is vLLM's 400", async () => {
  const { status, body } = await complete({ prompt: [1, 2, 3], max_tokens: 510 });
  assert.equal(status, 400);
  assert.equal(
    body.error.message,
    "This model's maximum context length is 512 tokens. However, you requested 513 tokens (3 in the messages, 510 in the completion). Please reduce the length of the messages or completion.",
  );
});

Deno.test("health is 200; unknown routes are JSON 404s", async () => {
  assert.equal((await app.request("/health")).status, 200);
  const res = await app.request("/v1/embeddings", { method: "POST" });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.type, "NotFoundError");
});

Deno.test("after close, requests are 503", async () => {
  const other = createEmbeddedApp({ model, servedName: "closing" });
  await other.close();
  const { status, body } = await postJson(other.app, "/v1/completions", { prompt: [1] });
  assert.equal(status, 503);
  assert.equal(body.error.code, 503);
});

/**
 * `/v1/chat/completions`: the tokenizer's chat template (a copy of the tiny fixture with one added), the
 * documented fallback template (stories260K has none), logprobs in chat's format, and bad messages.
 */

import assert from "node:assert/strict";
import { loadModel } from "../../../src/model/model.ts";
import { createEmbeddedApp } from "../../../src/serve/embedded/app.ts";
import { plainChatTemplate } from "../../../src/serve/embedded/prompt.ts";
import { postJson, STORIES, tinyWithChatTemplate } from "./helpers.ts";

const tiny = await loadModel(await tinyWithChatTemplate());
const tinyApp = createEmbeddedApp({ model: tiny }).app;
const stories = await loadModel(STORIES);
const storiesApp = createEmbeddedApp({ model: stories }).app;

const messages = [
  { role: "user", content: "what color is the sky" },
  { role: "assistant", content: "blue" },
  { role: "user", content: [{ type: "text", text: "what color is the " }, { type: "text", text: "sea" }] },
];
const flat = [
  { role: "user", content: "what color is the sky" },
  { role: "assistant", content: "blue" },
  { role: "user", content: "what color is the sea" },
];

Deno.test("chat: messages are rendered with the tokenizer's template and a generation prompt", async () => {
  const { status, body } = await postJson(tinyApp, "/v1/chat/completions", {
    model: "tiny-chat",
    messages,
    max_tokens: 10,
    temperature: 0,
    ignore_eos: true,
  });
  assert.equal(status, 200);
  assert.equal(body.object, "chat.completion");
  assert.match(body.id, /^chatcmpl-/);
  assert.equal(body.choices[0].message.role, "assistant");
  // The same ids through /v1/completions give the same text.
  const rendered = tiny.tokenizer.applyChatTemplate(flat, { addGenerationPrompt: true });
  assert.ok(rendered.endsWith("answer :"), rendered);
  const ids = tiny.tokenizer.encode(rendered, { addSpecialTokens: false });
  assert.equal(ids.filter((id) => id === tiny.tokenizer.bosTokenId).length, 1, "the template's BOS only");
  const completion = await postJson(tinyApp, "/v1/completions", {
    model: "tiny-chat",
    prompt: ids,
    max_tokens: 10,
    temperature: 0,
    ignore_eos: true,
  });
  assert.equal(body.choices[0].message.content, completion.body.choices[0].text);
  assert.deepEqual(body.usage, {
    prompt_tokens: ids.length,
    completion_tokens: 10,
    total_tokens: ids.length + 10,
  });
});

Deno.test("chat: without a chat template, the documented plain template is used (BOS first)", async () => {
  assert.equal(
    plainChatTemplate(flat),
    "user: what color is the sky\nassistant: blue\nuser: what color is the sea\nassistant:",
  );
  const chat = await postJson(storiesApp, "/v1/chat/completions", {
    messages,
    max_tokens: 12,
    temperature: 0,
  });
  const completion = await postJson(storiesApp, "/v1/completions", {
    prompt: plainChatTemplate(flat),
    max_tokens: 12,
    temperature: 0,
  });
  assert.equal(chat.status, 200);
  assert.equal(chat.body.choices[0].message.content, completion.body.choices[0].text);
  assert.equal(chat.body.usage.prompt_tokens, stories.tokenizer.encode(plainChatTemplate(flat)).length);
});

Deno.test("chat: logprobs and top_logprobs in chat's format", async () => {
  const { body } = await postJson(storiesApp, "/v1/chat/completions", {
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 5,
    temperature: 0,
    logprobs: true,
    top_logprobs: 3,
  });
  const { content } = body.choices[0].logprobs;
  assert.equal(content.length, 5);
  for (const entry of content) {
    assert.ok(entry.logprob <= 0);
    assert.deepEqual(entry.bytes, [...new TextEncoder().encode(entry.token)]);
    assert.equal(entry.top_logprobs.length, 3);
    assert.equal(entry.top_logprobs[0].logprob, entry.logprob, "greedy: the chosen token is the top one");
    assert.ok(entry.top_logprobs.every((t: { logprob: number }) => t.logprob <= entry.logprob));
  }
  const none = await postJson(storiesApp, "/v1/chat/completions", {
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 2,
  });
  assert.equal(none.body.choices[0].logprobs, null);
});

Deno.test("chat: max_tokens defaults to the rest of the context", async () => {
  const { body } = await postJson(tinyApp, "/v1/chat/completions", {
    messages: [{ role: "user", content: "what" }],
    temperature: 0,
    ignore_eos: true,
  });
  assert.equal(body.usage.total_tokens, tiny.config.maxPositionEmbeddings);
  assert.equal(body.choices[0].finish_reason, "length");
});

Deno.test("chat: malformed messages are 400s naming the problem", async () => {
  const cases: [unknown, RegExp][] = [
    [undefined, /'messages' must be a non-empty list/],
    [[], /'messages' must be a non-empty list/],
    [[{ content: "hi" }], /'messages\[0\]' must be an object with a string 'role'/],
    [
      [{ role: "user", content: [{ type: "image_url" }] }],
      /content\[0\] must be a \{type: "text", text\} part/,
    ],
    [[{ role: "user", content: 3 }], /content must be a string or a list of text parts/],
  ];
  for (const [bad, message] of cases) {
    const { status, body } = await postJson(storiesApp, "/v1/chat/completions", { messages: bad });
    assert.equal(status, 400);
    assert.equal(body.error.param, "messages");
    assert.match(body.error.message, message);
  }
  const { status, body } = await postJson(storiesApp, "/v1/chat/completions", {
    messages: [{ role: "user", content: "Hi" }],
    top_logprobs: 2,
  });
  assert.equal(status, 400);
  assert.match(body.error.message, /'top_logprobs' needs 'logprobs' set to true/);
});

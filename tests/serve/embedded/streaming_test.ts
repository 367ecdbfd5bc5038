/**
 * Streaming: chunks in OpenAI's format whose text adds up to the non-streaming text (greedy, seeded, with stop
 * strings), `[DONE]` last, usage on request; and one stream over a real socket on 127.0.0.1.
 */

import assert from "node:assert/strict";
import { loadModel } from "../../../src/model/model.ts";
import { createEmbeddedApp } from "../../../src/serve/embedded/app.ts";
import { post, postJson, sseData, STORIES } from "./helpers.ts";

const model = await loadModel(STORIES);
const { app } = createEmbeddedApp({ model, servedName: "stories" });

// deno-lint-ignore no-explicit-any
type Chunk = any;

/** The parsed chunks of a streamed request, after checking the stream's framing. */
async function streamed(path: string, body: Record<string, unknown>): Promise<Chunk[]> {
  const res = await post(app, path, { ...body, stream: true });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const data = sseData(await res.text());
  assert.equal(data.at(-1), "[DONE]");
  return data.slice(0, -1).map((d) => JSON.parse(d));
}

const cases: Record<string, unknown>[] = [
  { prompt: [1], max_tokens: 24, temperature: 0 },
  { prompt: "Once upon a time", max_tokens: 24, temperature: 0.9, seed: 11 },
  { prompt: [1], max_tokens: 32, temperature: 0, stop: ["little girl", "xyz"] },
  { prompt: "The dog", max_tokens: 16, temperature: 0, stop: "." },
];

Deno.test("streaming completions: the chunks' text adds up to the non-streaming text", async () => {
  for (const body of cases) {
    const whole = await postJson(app, "/v1/completions", body);
    const chunks = await streamed("/v1/completions", body);
    const id = chunks[0].id;
    for (const c of chunks) {
      assert.equal(c.object, "text_completion");
      assert.equal(c.id, id, "one id per stream");
      assert.equal(c.model, "stories");
      assert.equal(c.choices.length, 1);
    }
    assert.equal(
      chunks.map((c) => c.choices[0].text).join(""),
      whole.body.choices[0].text,
      JSON.stringify(body),
    );
    assert.ok(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null));
    assert.equal(chunks.at(-1).choices[0].finish_reason, whole.body.choices[0].finish_reason);
    assert.equal(chunks.at(-1).choices[0].stop_reason, whole.body.choices[0].stop_reason);
  }
});

Deno.test("streaming completions: a stop string is never streamed, even in part", async () => {
  const chunks = await streamed("/v1/completions", cases[2]);
  const text = chunks.map((c) => c.choices[0].text).join("");
  assert.ok(!text.includes("little"), text);
  assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
});

Deno.test("streaming: include_usage adds a last chunk with no choices and the token counts", async () => {
  const body = { prompt: [1], max_tokens: 5, temperature: 0, stream_options: { include_usage: true } };
  const chunks = await streamed("/v1/completions", body);
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.deepEqual(chunks.at(-1).usage, { prompt_tokens: 1, completion_tokens: 5, total_tokens: 6 });
});

Deno.test("streaming: logprobs come with each token's chunk, one token per chunk", async () => {
  const body = { prompt: [1], max_tokens: 6, temperature: 0, logprobs: 2 };
  const whole = await postJson(app, "/v1/completions", body);
  const chunks = await streamed("/v1/completions", body);
  const perToken = chunks.filter((c) => c.choices[0].logprobs !== null);
  assert.equal(perToken.length, 6);
  assert.deepEqual(
    perToken.flatMap((c) => c.choices[0].logprobs.token_logprobs),
    whole.body.choices[0].logprobs.token_logprobs,
  );
});

Deno.test("streaming chat: a role chunk, content deltas equal to the whole message, an empty final delta", async () => {
  const body = { messages: [{ role: "user", content: "Tell me a story." }], max_tokens: 20, temperature: 0 };
  const whole = await postJson(app, "/v1/chat/completions", body);
  const chunks = await streamed("/v1/chat/completions", body);
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  const content = chunks.slice(1).map((c) => c.choices[0].delta.content ?? "").join("");
  assert.equal(content, whole.body.choices[0].message.content);
  assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
});

Deno.test("streaming over HTTP on 127.0.0.1: chunks arrive through a real socket, then [DONE]", async () => {
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, app.fetch);
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const models = await (await fetch(`${base}/v1/models`)).json();
    assert.equal(models.data[0].id, "stories");
    const res = await fetch(`${base}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "stories", prompt: [1], max_tokens: 16, temperature: 0, stream: true }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    let text = "", reads = 0;
    const decoder = new TextDecoder();
    for await (const bytes of res.body!) {
      text += decoder.decode(bytes, { stream: true });
      reads++;
    }
    const data = sseData(text);
    assert.equal(data.at(-1), "[DONE]");
    assert.ok(reads > 1, "the response came in several pieces");
    const streamedText = data.slice(0, -1).map((d) => JSON.parse(d).choices[0].text).join("");
    const whole = await postJson(app, "/v1/completions", { prompt: [1], max_tokens: 16, temperature: 0 });
    assert.equal(streamedText, whole.body.choices[0].text);
  } finally {
    await server.shutdown();
  }
});

Deno.test("streaming over HTTP: a client that goes away mid-stream does not stop the server", async () => {
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, app.fetch);
  try {
    const url = `http://127.0.0.1:${server.addr.port}/v1/completions`;
    const res = await fetch(url, {
      method: "POST",
      body: JSON.stringify({ prompt: [1], max_tokens: 400, temperature: 0, ignore_eos: true, stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    const after = await fetch(url, { method: "POST", body: JSON.stringify({ prompt: [1], max_tokens: 2 }) });
    assert.equal(after.status, 200);
    assert.equal((await after.json()).usage.completion_tokens, 2);
  } finally {
    await server.shutdown();
  }
});

/**
 * The plugins' HTTP client: bearer tokens, bounded exponential backoff on connection errors and 5xx only, aborts,
 * and the server's message read from every error shape the servers use.
 */

import assert from "node:assert/strict";
import { ServerClient, ServerError, serverMessage } from "../../plugins/http.ts";
import type { CallContext, ServerConfig } from "../../plugins/types.ts";
import { countingFetch } from "./conformance.ts";
import { downUrl } from "./fakes/common.ts";

/** A request as the server saw it. */
interface Seen {
  readonly method: string;
  readonly path: string;
  readonly headers: Headers;
  readonly body: string;
}

/** Serves `answer` (given the request number, from 1) on 127.0.0.1 for the duration of `body`. */
async function withServer(
  answer: (n: number) => Response,
  body: (server: ServerConfig, seen: Seen[]) => Promise<void>,
) {
  const seen: Seen[] = [];
  const http = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const { pathname } = new URL(req.url);
    seen.push({
      method: req.method,
      path: pathname,
      headers: new Headers(req.headers),
      body: await req.text(),
    });
    return answer(seen.length);
  });
  try {
    await body({ name: "t", kind: "vllm", url: `http://127.0.0.1:${http.addr.port}/`, token: "tok" }, seen);
  } finally {
    await http.shutdown();
  }
}

const ctx = (extra: Partial<CallContext> = {}): CallContext => ({
  fetch,
  retries: 3,
  backoffMs: 5,
  ...extra,
});

Deno.test("serverMessage reads every error shape the servers answer with", () => {
  const cases: [unknown, string][] = [
    [{ error: { message: "nested", type: "BadRequestError", code: 400 } }, "nested"], // vLLM now, llama.cpp
    [{ object: "error", message: "flat", type: "BadRequestError", code: 400 }, "flat"], // vLLM before, SGLang
    [{ error: "a string" }, "a string"], // Ollama, TGI/LoRAX, vLLM's 401
    [{ detail: "Not Found" }, "Not Found"], // FastAPI
    [{ detail: [{ loc: ["body", "lora_name"], msg: "field required" }] }, "field required"],
    [{ success: false, error_message: "sglang says no", loaded_adapters: null }, "sglang says no"],
  ];
  for (const [body, message] of cases) assert.equal(serverMessage(JSON.stringify(body)), message);
  assert.equal(serverMessage("  Internal Server Error\n"), "Internal Server Error");
  assert.equal(serverMessage("x".repeat(600)).length, 501);
});

Deno.test("requests carry the bearer token and JSON; the base URL's trailing slash is dropped", async () => {
  await withServer(() => new Response("ok"), async (server, seen) => {
    const reply = await new ServerClient(server, ctx()).send({ path: "/v1/load", json: { a: 1 } });
    assert.deepEqual(reply, { status: 200, text: "ok" });
    assert.deepEqual([seen[0].method, seen[0].path, seen[0].body], ["POST", "/v1/load", `{"a":1}`]);
    assert.equal(seen[0].headers.get("authorization"), "Bearer tok");
    assert.equal(seen[0].headers.get("content-type"), "application/json");
    await new ServerClient({ ...server, token: undefined }, ctx()).send({ path: "/x" });
    assert.equal(seen[1].headers.get("authorization"), null);
  });
});

Deno.test("5xx is retried with doubling waits and counted; success after that", async () => {
  const answer = (n: number) => new Response(n <= 3 ? "busy" : "done", { status: n <= 3 ? 503 : 200 });
  await withServer(answer, async (server, seen) => {
    const client = new ServerClient(server, ctx({ backoffMs: 20 }));
    const started = performance.now();
    assert.equal((await client.send({ path: "/" })).text, "done");
    assert.ok(performance.now() - started >= 20 + 40 + 80, "waits 20, 40, 80 ms");
    assert.equal(seen.length, 4);
    assert.equal(client.attempts, 4);
  });
});

Deno.test("5xx past the retries is a ServerError with the last status and message", async () => {
  const answer = () => Response.json({ error: { message: "engine dead", code: 500 } }, { status: 500 });
  await withServer(answer, async (server, seen) => {
    const error = await new ServerClient(server, ctx()).send({ path: "/v1/x" }).catch((e) => e);
    assert.ok(error instanceof ServerError);
    assert.deepEqual([error.status, error.serverMessage, error.attempts], [500, "engine dead", 4]);
    assert.equal(error.message, "GET /v1/x answered 500: engine dead (4 attempts)");
    assert.equal(seen.length, 4);
  });
});

Deno.test("4xx is never retried", async () => {
  for (const status of [400, 401, 404, 409, 422]) {
    await withServer(() => Response.json({ error: `no (${status})` }, { status }), async (server, seen) => {
      const client = new ServerClient(server, ctx());
      const error = await client.send({ path: "/" }).catch((e) => e);
      assert.deepEqual([error.status, error.serverMessage, seen.length, client.attempts], [
        status,
        `no (${status})`,
        1,
        1,
      ]);
    });
  }
});

Deno.test("connection errors are retried, then a ServerError without status", async () => {
  const counting = countingFetch();
  const server: ServerConfig = { name: "down", kind: "ollama", url: downUrl() };
  const error = await new ServerClient(server, ctx({ fetch: counting.fetch, retries: 2 })).send({
    path: "/api/tags",
  })
    .catch((e) => e);
  assert.ok(error instanceof ServerError);
  assert.equal(error.status, undefined);
  assert.equal(counting.calls(), 3);
  assert.match(error.message, /^GET \/api\/tags to http:\/\/127\.0\.0\.1:\d+ failed: .* \(3 attempts\)$/);
});

Deno.test("a body factory is called again for each attempt (uploads are reopened)", async () => {
  await withServer((n) => new Response(null, { status: n === 1 ? 502 : 201 }), async (server, seen) => {
    let made = 0;
    const body = () => {
      made++;
      return new Blob(["bytes"]).stream();
    };
    assert.equal((await new ServerClient(server, ctx()).send({ path: "/api/blobs/x", body })).status, 201);
    assert.deepEqual([made, seen.length, seen[1].body], [2, 2, "bytes"]);
    assert.equal(seen[1].headers.get("content-type"), "application/octet-stream");
  });
});

Deno.test("an abort ends the wait between attempts and rejects with the signal's reason", async () => {
  const controller = new AbortController();
  const server: ServerConfig = { name: "down", kind: "vllm", url: downUrl() };
  const started = performance.now();
  setTimeout(() => controller.abort(new DOMException("stop", "AbortError")), 30);
  const error = await new ServerClient(server, ctx({ backoffMs: 60_000, signal: controller.signal }))
    .send({ path: "/" }).catch((e) => e);
  assert.equal(error.name, "AbortError");
  assert.ok(performance.now() - started < 1000);
  const already = AbortSignal.abort();
  await assert.rejects(new ServerClient(server, ctx({ signal: already })).send({ path: "/" }), {
    name: "AbortError",
  });
});

Deno.test("answers: any HTTP answer counts, even a 401; no answer does not", async () => {
  await withServer(() => new Response("no", { status: 401 }), async (server, seen) => {
    assert.equal(await new ServerClient(server, ctx()).answers("/health"), true);
    assert.equal(seen.length, 1, "one attempt only");
  });
  const down = new ServerClient({ name: "d", kind: "vllm", url: downUrl() }, ctx());
  assert.equal(await down.answers("/health"), false);
  assert.equal(down.attempts, 1);
});

Deno.test("a file stream that never reached a down server is closed (no leaked file)", async () => {
  const file = await Deno.makeTempFile();
  await Deno.writeTextFile(file, "bytes");
  const server: ServerConfig = { name: "down", kind: "ollama", url: downUrl() };
  let opened = 0;
  const body = async () => (opened++, (await Deno.open(file)).readable);
  await assert.rejects(
    new ServerClient(server, ctx({ retries: 1 })).send({ path: "/api/blobs/x", body }),
    ServerError,
  );
  assert.equal(opened, 2);
  await Deno.remove(file);
});

/**
 * vLLM's runtime LoRA routes, status code and body for each case, and `/v1/models` before and after.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../../../src/model/model.ts";
import { createEmbeddedApp } from "../../../src/serve/embedded/app.ts";
import { post, postJson, STORIES, tempDir, TINY, writeTestAdapter } from "./helpers.ts";

const model = await loadModel(TINY);
const tmp = await tempDir("lora-routes");
const first = join(tmp, "first"), second = join(tmp, "second"), rank8 = join(tmp, "rank8");
await writeTestAdapter(first, model.config, { seed: 1 });
await writeTestAdapter(second, model.config, { seed: 2 });
await writeTestAdapter(rank8, model.config, { rank: 8 });
const wrongModel = join(tmp, "for-stories");
await writeTestAdapter(wrongModel, (await loadModel(STORIES)).config, { layers: [0] });

/** A fresh server (each test starts with no adapters). */
const serve = (options: { maxLoraRank?: number; allowedAdapterRoots?: string[] } = {}) =>
  createEmbeddedApp({ model, ...options }).app;

/** Status, content type and text of a request. */
async function call(app: ReturnType<typeof serve>, path: string, body: unknown) {
  const res = await post(app, path, body);
  const type = (res.headers.get("content-type") ?? "").split(";")[0];
  return { status: res.status, type, text: await res.text() };
}

const greedy = { prompt: "what color is the", max_tokens: 12, temperature: 0, ignore_eos: true };
const text = async (app: ReturnType<typeof serve>, name: string) => {
  const { status, body } = await postJson(app, "/v1/completions", { ...greedy, model: name });
  assert.equal(status, 200, JSON.stringify(body));
  return body.choices[0].text as string;
};

Deno.test("load and unload: vLLM's plain-text bodies, and /v1/models before, between and after", async () => {
  const app = serve();
  const ids = async () =>
    (await (await app.request("/v1/models")).json()).data.map((
      m: Record<string, unknown>,
    ) => [m.id, m.root, m.parent]);
  assert.deepEqual(await ids(), [["tiny-llama", model.dir, null]]);
  const loaded = await call(app, "/v1/load_lora_adapter", { lora_name: "a", lora_path: first });
  assert.deepEqual(loaded, {
    status: 200,
    type: "text/plain",
    text: "Success: LoRA adapter 'a' added successfully.",
  });
  await call(app, "/v1/load_lora_adapter", { lora_name: "b", lora_path: second });
  assert.deepEqual(await ids(), [["tiny-llama", model.dir, null], ["a", first, "tiny-llama"], [
    "b",
    second,
    "tiny-llama",
  ]]);
  const list = await (await app.request("/v1/models")).json();
  assert.equal(list.object, "list");
  assert.ok(list.data.every((m: Record<string, unknown>) => m.object === "model"));
  const removed = await call(app, "/v1/unload_lora_adapter", { lora_name: "a" });
  assert.deepEqual(removed, {
    status: 200,
    type: "text/plain",
    text: "Success: LoRA adapter 'a' removed successfully.",
  });
  assert.deepEqual(await ids(), [["tiny-llama", model.dir, null], ["b", second, "tiny-llama"]]);
  assert.equal((await postJson(app, "/v1/completions", { ...greedy, model: "a" })).status, 404);
});

Deno.test("load: a missing field is vLLM's 400", async () => {
  const app = serve();
  for (const body of [{}, { lora_name: "a" }, { lora_path: first }, { lora_name: "", lora_path: first }]) {
    const { status, body: error } = await postJson(app, "/v1/load_lora_adapter", body);
    assert.equal(status, 400);
    assert.deepEqual(error, {
      error: {
        message: "Both 'lora_name' and 'lora_path' must be provided.",
        type: "InvalidUserInput",
        param: null,
        code: 400,
      },
    });
  }
  const bad = await postJson(app, "/v1/load_lora_adapter", "{oops");
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.type, "BadRequestError");
});

Deno.test("load: a loaded name is a 400 unless load_inplace, which swaps the weights", async () => {
  const app = serve();
  assert.equal((await call(app, "/v1/load_lora_adapter", { lora_name: "a", lora_path: first })).status, 200);
  const before = await text(app, "a");
  const again = await postJson(app, "/v1/load_lora_adapter", { lora_name: "a", lora_path: second });
  assert.equal(again.status, 400);
  assert.deepEqual(again.body.error, {
    message:
      "The lora adapter 'a' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.",
    type: "InvalidUserInput",
    param: null,
    code: 400,
  });
  assert.equal(await text(app, "a"), before, "a refused load changes nothing");
  const inplace = await call(app, "/v1/load_lora_adapter", {
    lora_name: "a",
    lora_path: second,
    load_inplace: true,
  });
  assert.equal(inplace.text, "Success: LoRA adapter 'a' added successfully.");
  const after = await text(app, "a");
  assert.notEqual(after, before);
  // The same weights under another name give the same text.
  await call(app, "/v1/load_lora_adapter", { lora_name: "b", lora_path: second });
  assert.equal(await text(app, "b"), after);
  const listed = (await (await app.request("/v1/models")).json()).data.map((m: { id: string }) => m.id);
  assert.deepEqual(listed, ["tiny-llama", "a", "b"], "in place keeps the adapter's position");
});

Deno.test("load: no adapter at the path is vLLM's 404", async () => {
  const app = serve();
  for (const path of [join(tmp, "nowhere"), tmp]) {
    const { status, body } = await postJson(app, "/v1/load_lora_adapter", {
      lora_name: "x",
      lora_path: path,
    });
    assert.equal(status, 404);
    assert.deepEqual(body.error, {
      message: `Loading lora x failed: No adapter found for ${path}`,
      type: "NotFoundError",
      param: null,
      code: 404,
    });
  }
});

Deno.test("load: a rank above max_lora_rank, or an adapter for another model, is a 400", async () => {
  const app = serve({ maxLoraRank: 4 });
  const { status, body } = await postJson(app, "/v1/load_lora_adapter", {
    lora_name: "big",
    lora_path: rank8,
  });
  assert.equal(status, 400);
  assert.deepEqual(body.error, {
    message: "LoRA rank 8 is greater than max_lora_rank 4.",
    type: "BadRequestError",
    param: null,
    code: 400,
  });
  const wrong = await postJson(app, "/v1/load_lora_adapter", { lora_name: "w", lora_path: wrongModel });
  assert.equal(wrong.status, 400);
  assert.equal(wrong.body.error.type, "BadRequestError");
  assert.match(
    wrong.body.error.message,
    /^Loading lora w failed: .*adapter_model\.safetensors: tensor .* has shape/,
  );
  assert.equal(
    (await call(serve(), "/v1/load_lora_adapter", { lora_name: "big", lora_path: rank8 })).status,
    200,
  );
});

Deno.test("load: outside allowedAdapterRoots is a 400; inside loads", async () => {
  const app = serve({ allowedAdapterRoots: [join(tmp, "allowed")] });
  const allowed = join(tmp, "allowed", "one");
  await writeTestAdapter(allowed, model.config);
  const outside = await postJson(app, "/v1/load_lora_adapter", { lora_name: "o", lora_path: first });
  assert.equal(outside.status, 400);
  assert.equal(outside.body.error.param, "lora_path");
  assert.match(outside.body.error.message, /lies outside the allowed adapter roots/);
  const sneaky = join(tmp, "allowed", "..", "first");
  assert.equal(
    (await postJson(app, "/v1/load_lora_adapter", { lora_name: "o", lora_path: sneaky })).status,
    400,
  );
  const link = join(tmp, "allowed", "link");
  await Deno.symlink(first, link);
  assert.equal(
    (await postJson(app, "/v1/load_lora_adapter", { lora_name: "o", lora_path: link })).status,
    400,
  );
  assert.equal(
    (await call(app, "/v1/load_lora_adapter", { lora_name: "i", lora_path: allowed })).status,
    200,
  );
});

Deno.test("load: the base model's name cannot be taken by an adapter", async () => {
  const { status, body } = await postJson(serve(), "/v1/load_lora_adapter", {
    lora_name: "tiny-llama",
    lora_path: first,
  });
  assert.equal(status, 400);
  assert.equal(body.error.param, "lora_name");
});

Deno.test("unload: an unknown name is vLLM's 404, a missing one a 400", async () => {
  const app = serve();
  const { status, body } = await postJson(app, "/v1/unload_lora_adapter", { lora_name: "ghost" });
  assert.equal(status, 404);
  assert.deepEqual(body, {
    error: {
      message: "The lora adapter 'ghost' cannot be found.",
      type: "NotFoundError",
      param: null,
      code: 404,
    },
  });
  const missing = await postJson(app, "/v1/unload_lora_adapter", {});
  assert.equal(missing.status, 400);
  assert.equal(missing.body.error.type, "InvalidUserInput");
});

Deno.test("with allowedHosts, a request naming another Host is refused (DNS rebinding); loopback names pass", async () => {
  const { app, close } = createEmbeddedApp({ model, allowedHosts: ["localhost", "127.0.0.1", "::1"] });
  try {
    const refused = await app.request("http://rebind.example:8001/v1/load_lora_adapter", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ lora_name: "x", lora_path: first }),
    });
    assert.equal(refused.status, 403);
    const body = await refused.json();
    assert.equal(body.error.type, "PermissionDeniedError");
    assert.match(body.error.message, /Host 'rebind\.example'/);
    for (const host of ["127.0.0.1:8001", "localhost", "[::1]:9"]) {
      assert.equal((await app.request(`http://${host}/health`)).status, 200, host);
    }
  } finally {
    await close();
  }
});

/**
 * Serving adapters: output equal to the engine's own generation with the adapter, and what happens to requests
 * in flight when an adapter is loaded in place, unloaded, or the server closes.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generate } from "../../../src/model/generate.ts";
import { buildStepGraph } from "../../../src/model/graphs.ts";
import { loadModel } from "../../../src/model/model.ts";
import { readAdapter } from "../../../src/model/peft.ts";
import { createEmbeddedApp } from "../../../src/serve/embedded/app.ts";
import { post, postJson, sseData, tempDir, TINY, writeTestAdapter } from "./helpers.ts";

const model = await loadModel(TINY);
const tmp = await tempDir("adapters");
const first = join(tmp, "first"), second = join(tmp, "second"), rslora = join(tmp, "rslora");
await writeTestAdapter(first, model.config, {
  seed: 1,
  targets: ["q_proj", "v_proj", "down_proj"],
  layers: [0, 2],
});
await writeTestAdapter(second, model.config, {
  seed: 2,
  targets: ["q_proj", "v_proj", "down_proj"],
  layers: [0, 2],
});
await writeTestAdapter(rslora, model.config, { seed: 3, rank: 2, alpha: 3 });
// rsLoRA is only in adapter_config.json: switch it on there.
const rsConfig = join(rslora, "adapter_config.json");
await Deno.writeTextFile(
  rsConfig,
  JSON.stringify({ ...JSON.parse(await Deno.readTextFile(rsConfig)), use_rslora: true }),
);

type App = ReturnType<typeof createEmbeddedApp>["app"];
const load = async (app: App, name: string, path: string, inplace = false) =>
  assert.equal(
    (await post(app, "/v1/load_lora_adapter", { lora_name: name, lora_path: path, load_inplace: inplace }))
      .status,
    200,
  );

/** A long greedy request whose logprobs name the generated ids. */
const LONG = {
  prompt: [1, 8, 5],
  max_tokens: 100,
  temperature: 0,
  ignore_eos: true,
  logprobs: 0,
  return_tokens_as_token_ids: true,
};
const idsOf = (tokens: string[]) => tokens.map((t) => Number(t.slice("token_id:".length)));
const generated = async (app: App, name: string, body: Record<string, unknown> = LONG) => {
  const { status, body: res } = await postJson(app, "/v1/completions", { ...body, model: name });
  assert.equal(status, 200, JSON.stringify(res));
  return idsOf(res.choices[0].logprobs.tokens);
};

/** Starts a streamed request and waits for its first token; `rest()` reads the others. */
async function startStream(app: App, name: string) {
  const res = await post(app, "/v1/completions", { ...LONG, model: name, stream: true });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("token_id:")) text += (await reader.read()).value;
  return {
    async rest(): Promise<{ ids: number[]; data: string[] }> {
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value;
      const data = sseData(text);
      const chunks = data.filter((d) => d.startsWith("{")).map((d) => JSON.parse(d));
      const ids = idsOf(chunks.flatMap((c) => c.choices?.[0]?.logprobs?.tokens ?? []));
      return { ids, data };
    },
  };
}

Deno.test("an adapter changes the output, and gives the engine's own greedy ids (scale folded into B)", async () => {
  const { app } = createEmbeddedApp({ model });
  await load(app, "first", first);
  await load(app, "rs", rslora);
  const short = { ...LONG, max_tokens: 20 };
  const base = await generated(app, "tiny-llama", short);
  for (const [name, dir] of [["first", first], ["rs", rslora]]) {
    const served = await generated(app, name, short);
    assert.notDeepEqual(served, base, `${name} changes the output`);
    const adapter = await readAdapter(dir, model.config);
    const session = await model.session(
      buildStepGraph(model.config, model.weights, { config: adapter.config }),
    );
    const direct = await generate(session, model.config, short.prompt, {
      maxTokens: 20,
      adapterInputs: adapter.params,
    });
    assert.deepEqual(served, direct, name);
    await session.release();
  }
});

Deno.test("a request in flight while its adapter is loaded in place finishes with one weight set wholly", async () => {
  const { app } = createEmbeddedApp({ model });
  await load(app, "x", first);
  const withFirst = await generated(app, "x");
  await load(app, "x", second, true);
  const withSecond = await generated(app, "x");
  assert.notDeepEqual(withFirst, withSecond);
  await load(app, "x", first, true);

  const stream = await startStream(app, "x");
  await load(app, "x", second, true); // while the stream runs
  const { ids, data } = await stream.rest();
  assert.equal(data.at(-1), "[DONE]");
  assert.equal(ids.length, 100);
  assert.ok(
    [withFirst, withSecond].some((ref) => JSON.stringify(ref) === JSON.stringify(ids)),
    "the in-flight request used the first or the second weights for all its tokens",
  );
  assert.deepEqual(ids, withFirst, "it captured the adapter it started with");
  assert.deepEqual(await generated(app, "x"), withSecond, "requests after the load use the new weights");
});

Deno.test("concurrent requests on the base and on two adapters each equal their solo output", async () => {
  const { app } = createEmbeddedApp({ model });
  await load(app, "a", first);
  await load(app, "b", second);
  const names = ["tiny-llama", "a", "b", "a"];
  const solo = [];
  for (const name of names) solo.push(await generated(app, name));
  const together = await Promise.all(names.map((name) => generated(app, name)));
  assert.deepEqual(together, solo);
});

Deno.test("unloading an adapter while a request uses it lets the request finish", async () => {
  const { app } = createEmbeddedApp({ model });
  await load(app, "a", first);
  const reference = await generated(app, "a");
  const stream = await startStream(app, "a");
  assert.equal((await post(app, "/v1/unload_lora_adapter", { lora_name: "a" })).status, 200);
  assert.deepEqual((await stream.rest()).ids, reference);
  assert.equal((await post(app, "/v1/completions", { ...LONG, model: "a" })).status, 404);
});

Deno.test("close ends a running stream with an error event and [DONE]", async () => {
  const server = createEmbeddedApp({ model });
  const stream = await startStream(server.app, "tiny-llama");
  await server.close();
  const { ids, data } = await stream.rest();
  assert.ok(ids.length < 100);
  assert.equal(data.at(-1), "[DONE]");
  assert.match(JSON.parse(data.at(-2)!).error.message, /shutting down/);
});

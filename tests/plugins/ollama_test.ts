/**
 * Ollama: the conformance suite against the fake, plus blobs named by the SHA-256 of their bytes, the model
 * created from base + adapter, GGUF adapters for bases Ollama cannot convert safetensors adapters for, the
 * architecture checks, and errors inside the NDJSON stream.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { PLUGINS } from "../../plugins/mod.ts";
import { AttachError, UnsupportedError } from "../../plugins/types.ts";
import { freshPath, makeAdapter, TINY } from "./adapters.ts";
import { conformance, FAST } from "./conformance.ts";
import { type OllamaOptions, startOllama } from "./fakes/ollama.ts";

conformance("ollama", () => startOllama({ token: "secret" }));

const ollama = PLUGINS.ollama;

async function withOllama(
  options: OllamaOptions,
  body: (fake: Awaited<ReturnType<typeof startOllama>>) => Promise<void>,
) {
  const fake = await startOllama(options);
  try {
    await body(fake);
  } finally {
    await fake.close();
  }
}

async function sha256(file: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(file));
  return "sha256:" + Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("ollama: blobs are named by the SHA-256 of the files, and the model is base + those adapter files", async () => {
  await withOllama({}, async (fake) => {
    const alpha = await makeAdapter("alpha");
    await ollama.attach(fake.server, alpha, FAST);
    const config = await sha256(join(alpha.path, "adapter_config.json"));
    const weights = await sha256(join(alpha.path, "adapter_model.safetensors"));
    assert.deepEqual([...fake.blobs.keys()].sort(), [config, weights].sort());
    assert.deepEqual(
      fake.requests.filter((r) => r.startsWith("POST /api/blobs/")).sort(),
      [
        `POST /api/blobs/${config}`,
        `POST /api/blobs/${weights}`,
      ].sort(),
    );
    assert.deepEqual(fake.created.get("flexora/alpha:latest")?.from, "tiny-llama");
    assert.deepEqual(fake.created.get("flexora/alpha:latest")?.adapters, {
      "adapter_config.json": config,
      "adapter_model.safetensors": weights,
    });
    assert.deepEqual(await ollama.list(fake.server, FAST), ["alpha"], "the base model is not an adapter");
  });
});

/** A base-model folder for qwen2: the tiny model's config.json as qwen2 (conversion reads only the config). */
async function qwen2Base(): Promise<string> {
  const dir = freshPath("qwen2-base");
  await Deno.mkdir(dir);
  const config = JSON.parse(await Deno.readTextFile(join(TINY, "config.json")));
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ ...config, model_type: "qwen2" }));
  return dir;
}

Deno.test("ollama: for a base it cannot convert safetensors adapters for, the adapter goes up as one GGUF blob", async () => {
  await withOllama({ baseArchitecture: "qwen2" }, async (fake) => {
    const alpha = await makeAdapter("alpha", { baseModel: await qwen2Base() });
    const before = [...Deno.readDirSync(alpha.path)].map((e) => e.name).sort();
    const result = await ollama.attach(fake.server, alpha, FAST);
    assert.equal(result.verification.changesOutput, true, result.verification.detail);
    const [[digest, bytes]] = [...fake.blobs];
    assert.equal(fake.blobs.size, 1);
    assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), "GGUF");
    assert.deepEqual(fake.created.get("flexora/alpha:latest")?.adapters, { "alpha.gguf": digest });
    assert.deepEqual(
      [...Deno.readDirSync(alpha.path)].map((e) => e.name).sort(),
      before,
      "nothing written into it",
    );
    assert.deepEqual(await ollama.list(fake.server, FAST), ["alpha"]);
  });
});

Deno.test("ollama: an adapter made for another architecture than Ollama's base is refused before any upload", async () => {
  await withOllama({ baseArchitecture: "qwen2" }, async (fake) => {
    const error = await ollama.attach(fake.server, await makeAdapter("alpha"), FAST).catch((e) => e);
    assert.ok(error instanceof AttachError, String(error));
    assert.match(error.message, /made for a 'llama' model .*, but Ollama's base 'tiny-llama' is 'qwen2'/);
    assert.deepEqual(fake.requests, ["POST /api/show"]);
  });
});

Deno.test("ollama: without the base model's folder, a GGUF-only base is an UnsupportedError naming options.modelDir", async () => {
  await withOllama({ baseArchitecture: "qwen2" }, async (fake) => {
    const adapter = await makeAdapter("alpha", { baseModel: "Qwen/Qwen2-0.5B" });
    const error = await ollama.attach(fake.server, adapter, FAST).catch((e) => e);
    assert.ok(error instanceof UnsupportedError, String(error));
    assert.match(error.message, /only for llama and gemma2 models, and the base 'tiny-llama' is 'qwen2'/);
    assert.match(error.message, /set options\.modelDir/);
    assert.deepEqual(fake.requests, ["POST /api/show"]);
  });
});

Deno.test("ollama: an error line in the create stream is an AttachError with Ollama's message", async () => {
  await withOllama({ baseArchitecture: "phi3", showArchitecture: false }, async (fake) => {
    const error = await ollama.attach(fake.server, await makeAdapter("alpha"), FAST).catch((e) => e);
    assert.ok(error instanceof AttachError, String(error));
    assert.equal(error.serverMessage, "unsupported architecture");
    assert.deepEqual(await ollama.list(fake.server, FAST), []);
  });
});

Deno.test("ollama: models live in options.namespace", async () => {
  await withOllama({}, async (fake) => {
    const server = { ...fake.server, options: { ...fake.server.options, namespace: "team" } };
    await ollama.attach(server, await makeAdapter("alpha"), FAST);
    assert.ok(fake.created.has("team/alpha:latest"));
    assert.deepEqual(await ollama.list(server, FAST), ["alpha"]);
    assert.deepEqual(await ollama.list(fake.server, FAST), [], "flexora's namespace holds none");
  });
});

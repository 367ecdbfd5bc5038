/**
 * llama.cpp: the conformance suite against the fake (adapters preloaded as `--lora <name>.gguf`), plus rescaling
 * without disturbing the other adapters, and an adapter that was not preloaded: written as GGUF (read back with
 * `@huggingface/gguf`), with the llama-server command line that preloads it.
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { PLUGINS } from "../../plugins/mod.ts";
import { AttachError, UnsupportedError } from "../../plugins/types.ts";
import { readGguf } from "../export/read_gguf.ts";
import { STORIES } from "../model/shared.ts";
import { freshPath, makeAdapter, TINY } from "./adapters.ts";
import { conformance, FAST } from "./conformance.ts";
import { ggufPath, startLlamacpp } from "./fakes/llamacpp.ts";

conformance(
  "llamacpp",
  ({ adapters }) =>
    startLlamacpp({ token: "secret", loras: [...new Set(adapters.map((a) => ggufPath(a.name)))] }),
  { newVersion: "preloaded" },
);

const llamacpp = PLUGINS.llamacpp;

Deno.test("llamacpp: attach and detach rescale one preloaded adapter and leave the others as they were", async () => {
  const fake = await startLlamacpp({
    loras: [ggufPath("other"), ggufPath("alpha"), "/elsewhere/third.gguf"],
  });
  try {
    // Someone runs "other" at 0.5; the older servers reset every adapter missing from a POST.
    await fetch(`${fake.server.url}/lora-adapters`, {
      method: "POST",
      body: JSON.stringify([{ id: 0, scale: 0.5 }]),
    }).then((r) => r.body?.cancel());
    const result = await llamacpp.attach(fake.server, await makeAdapter("alpha"), FAST);
    assert.equal(result.verification.changesOutput, true);
    assert.deepEqual(fake.scales, [0.5, 1, 0]);
    assert.deepEqual(fake.posted.at(-1), [{ id: 0, scale: 0.5 }, { id: 1, scale: 1 }, { id: 2, scale: 0 }]);
    assert.deepEqual(await llamacpp.list(fake.server, FAST), ["alpha", "other"]);
    await llamacpp.detach(fake.server, "alpha", FAST);
    assert.deepEqual(fake.scales, [0.5, 0, 0]);
    assert.deepEqual(await llamacpp.list(fake.server, FAST), ["other"]);
  } finally {
    await fake.close();
  }
});

Deno.test("llamacpp: a preloaded file may also be matched by the adapter's exact path", async () => {
  const alpha = await makeAdapter("alpha");
  const fake = await startLlamacpp({ loras: [alpha.path] });
  try {
    assert.equal((await llamacpp.attach(fake.server, alpha, FAST)).verification.listed, true);
    assert.deepEqual(fake.scales, [1]);
  } finally {
    await fake.close();
  }
});

Deno.test("llamacpp: an adapter that was not preloaded is written as GGUF, with the llama-server command that preloads it", async () => {
  const fake = await startLlamacpp({ loras: [ggufPath("other")] });
  try {
    const beta = await makeAdapter("beta");
    const error = await llamacpp.attach(fake.server, beta, FAST).catch((e) => e);
    assert.ok(error instanceof UnsupportedError, String(error));
    const file = join(dirname(beta.path), "beta.gguf");
    assert.match(error.message, /llama\.cpp cannot load adapters at run time/);
    assert.ok(
      error.message.includes(`llama-server -m BASE.gguf --lora ${file} --lora-init-without-apply`),
      error.message,
    );
    assert.ok(error.message.includes(`export-gguf --model ${TINY} --out BASE.gguf`), error.message);
    assert.match(error.message, /Preloaded: \/models\/lora\/other\.gguf/);
    assert.deepEqual(fake.requests, ["GET /lora-adapters"]);
    assert.deepEqual(fake.scales, [0]);
    const gguf = await readGguf(file);
    assert.equal(gguf.metadata["general.type"], "adapter");
    assert.equal(gguf.metadata["general.name"], "beta");
    assert.deepEqual([...gguf.tensors.keys()].filter((n) => n.startsWith("blk.2.")).sort(), [
      "blk.2.attn_q.weight.lora_a",
      "blk.2.attn_q.weight.lora_b",
      "blk.2.attn_v.weight.lora_a",
      "blk.2.attn_v.weight.lora_b",
    ]);
  } finally {
    await fake.close();
  }
  // llama-server restarted as the message says: the written file is now preloaded, and attach sets its scale.
  const restarted = await startLlamacpp({
    loras: [join(dirname((await makeAdapter("beta")).path), "beta.gguf")],
  });
  try {
    const result = await llamacpp.attach(restarted.server, await makeAdapter("beta"), FAST);
    assert.equal(result.verification.listed, true);
    assert.deepEqual(restarted.scales, [1]);
  } finally {
    await restarted.close();
  }
});

Deno.test("llamacpp: options.ggufDir and options.baseGguf name the file and the base in the command", async () => {
  const fake = await startLlamacpp({});
  const dir = freshPath("gguf-dir");
  try {
    const server = { ...fake.server, options: { ggufDir: dir, baseGguf: "/models/tiny.gguf" } };
    const error = await llamacpp.attach(server, await makeAdapter("gamma"), FAST).catch((e) => e);
    assert.ok(error instanceof UnsupportedError, String(error));
    const file = join(dir, "gamma.gguf");
    assert.ok(error.message.includes(`llama-server -m /models/tiny.gguf --lora ${file} `), error.message);
    assert.equal((await readGguf(file)).metadata["adapter.lora.alpha"], 8);
  } finally {
    await fake.close();
  }
});

Deno.test("llamacpp: without a base model folder the message says how to convert the adapter by hand", async () => {
  const fake = await startLlamacpp({});
  try {
    const adapter = await makeAdapter("delta", { baseModel: "meta-llama/Llama-3.2-1B" });
    const error = await llamacpp.attach(fake.server, adapter, FAST).catch((e) => e);
    assert.ok(error instanceof UnsupportedError, String(error));
    assert.match(error.message, /without its base model's folder: set options\.modelDir/);
    assert.ok(
      error.message.includes(`export-gguf --model BASE_DIR --adapter ${adapter.path} --out delta.gguf`),
    );
    await assert.rejects(Deno.stat(join(dirname(adapter.path), "delta.gguf")), Deno.errors.NotFound);
  } finally {
    await fake.close();
  }
});

Deno.test("llamacpp: an adapter that does not fit its base model is an AttachError naming the tensor", async () => {
  const fake = await startLlamacpp({});
  try {
    const server = { ...fake.server, options: { modelDir: STORIES } }; // D 64; the adapter is for the tiny model
    const error = await llamacpp.attach(server, await makeAdapter("epsilon"), FAST).catch((e) => e);
    assert.ok(error instanceof AttachError, String(error));
    assert.match(error.message, /cannot convert the adapter to GGUF/);
    assert.match(error.message, /q_proj\.lora_A\.weight' has shape \[4,32\], the model needs \[4,64\]/);
  } finally {
    await fake.close();
  }
});

/**
 * vLLM: the conformance suite against the fake, plus what only vLLM does: both error shapes, the 404 of a
 * server without runtime updating, resolver-directory mode, and an adapter that loads but changes nothing.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { PLUGINS } from "../../plugins/mod.ts";
import { AttachError } from "../../plugins/types.ts";
import { RUNTIME_UPDATING_OFF } from "../../plugins/vllm/mod.ts";
import { freshPath, makeAdapter } from "./adapters.ts";
import { conformance, FAST } from "./conformance.ts";
import { startVllm, type VllmOptions } from "./fakes/vllm.ts";

conformance("vllm", () => startVllm({ token: "secret" }));

const vllm = PLUGINS.vllm;

async function withVllm(
  options: VllmOptions,
  body: (fake: Awaited<ReturnType<typeof startVllm>>) => Promise<void>,
) {
  const fake = await startVllm(options);
  try {
    await body(fake);
  } finally {
    await fake.close();
  }
}

for (const errorShape of ["nested", "flat"] as const) {
  Deno.test(`vllm: a ${errorShape} error body gives the server's status and message`, async () => {
    // The server's own --max-lora-rank refuses the adapter; the sidecar was not told the limit.
    await withVllm({ errorShape, maxLoraRank: 2 }, async (fake) => {
      const error = await vllm.attach(fake.server, await makeAdapter("wide", { rank: 4 }), FAST).catch((e) =>
        e
      );
      assert.ok(error instanceof AttachError, String(error));
      assert.equal(error.status, 400);
      assert.equal(error.serverMessage, "LoRA rank 4 is greater than max_lora_rank 2.");
      const missing = await vllm.detach(fake.server, "nothing", FAST).catch((e) => e);
      assert.equal(missing.status, 404);
      assert.equal(missing.serverMessage, "The lora adapter 'nothing' cannot be found.");
    });
  });
}

Deno.test("vllm: a 500 is retried, and the final answer's message is kept (DoRA)", async () => {
  await withVllm({}, async (fake) => {
    const dora = await makeAdapter("dora");
    const config = JSON.parse(await Deno.readTextFile(join(dora.path, "adapter_config.json")));
    await Deno.writeTextFile(
      join(dora.path, "adapter_config.json"),
      JSON.stringify({ ...config, use_dora: true }),
    );
    const error = await vllm.attach(fake.server, dora, FAST).catch((e) => e);
    assert.equal(error.status, 500);
    assert.equal(error.serverMessage, "vLLM does not yet support DoRA.");
    assert.equal(fake.requests.filter((r) => r === "POST /v1/load_lora_adapter").length, 3);
  });
});

Deno.test("vllm: without runtime LoRA updating the 404 says how to start vLLM", async () => {
  await withVllm({ runtimeUpdating: false }, async (fake) => {
    const error = await vllm.attach(fake.server, await makeAdapter("alpha"), FAST).catch((e) => e);
    assert.ok(error instanceof AttachError, String(error));
    assert.equal(error.status, 404);
    assert.ok(error.message.endsWith(RUNTIME_UPDATING_OFF), error.message);
    assert.match(error.message, /--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=1/);
    const detach = await vllm.detach(fake.server, "alpha", FAST).catch((e) => e);
    assert.ok(detach.message.endsWith(RUNTIME_UPDATING_OFF), detach.message);
  });
});

Deno.test("vllm: an adapter that loads but changes nothing is listed with changesOutput false", async () => {
  await withVllm({}, async (fake) => {
    const result = await vllm.attach(fake.server, await makeAdapter("inert", { noEffect: true }), FAST);
    assert.equal(result.verification.listed, true);
    assert.equal(result.verification.changesOutput, false);
    assert.match(result.verification.detail, /does not change the output/);
  });
});

Deno.test("vllm: a new version is loaded in place (load_inplace) from its own folder; a first load is plain", async () => {
  await withVllm({}, async (fake) => {
    const v1 = await makeAdapter("alpha", { seed: 1 }), v2 = await makeAdapter("alpha", { seed: 2 });
    await vllm.attach(fake.server, v1, FAST);
    await vllm.attach(fake.server, v2, FAST);
    assert.deepEqual(fake.loadBodies, [
      { lora_name: "alpha", lora_path: v1.path },
      { lora_name: "alpha", lora_path: v2.path },
      { lora_name: "alpha", lora_path: v2.path, load_inplace: true },
    ]);
    assert.ok(!fake.requests.includes("POST /v1/unload_lora_adapter"), "never missing in between");
    assert.equal(fake.loaded.get("alpha")?.path, v2.path);
    const stale = await vllm.verify(fake.server, v1, FAST);
    assert.equal(stale.listed, false, "listed with the other version's root");
  });
});

Deno.test("vllm: a vLLM without load_inplace gets the new version by unload, then load", async () => {
  await withVllm({ loadInplace: false }, async (fake) => {
    const v1 = await makeAdapter("alpha", { seed: 1 }), v2 = await makeAdapter("alpha", { seed: 2 });
    await vllm.attach(fake.server, v1, FAST);
    const before = fake.requests.length;
    const result = await vllm.attach(fake.server, v2, FAST);
    assert.deepEqual(fake.requests.slice(before, before + 4), [
      "POST /v1/load_lora_adapter",
      "POST /v1/load_lora_adapter",
      "POST /v1/unload_lora_adapter",
      "POST /v1/load_lora_adapter",
    ]);
    assert.equal(result.verification.listed, true, result.verification.detail);
    assert.equal(fake.loaded.get("alpha")?.path, v2.path);
  });
});

Deno.test("vllm: resolver mode copies the adapter (no symlink, no load call) and it loads on first use", async () => {
  const resolverDir = freshPath("resolver");
  await withVllm({ resolverDir }, async (fake) => {
    const v1 = await makeAdapter("alpha", { seed: 1, baseModel: "tiny-llama" });
    const result = await vllm.attach(fake.server, v1, FAST);
    assert.equal(result.verification.listed, true, result.verification.detail);
    assert.equal(result.verification.changesOutput, true);
    assert.ok(!fake.requests.includes("POST /v1/load_lora_adapter"));
    const copy = join(resolverDir, "alpha");
    assert.equal((await Deno.lstat(copy)).isSymlink, false);
    assert.equal(fake.loaded.get("alpha")?.path, copy);
    assert.deepEqual([...Deno.readDirSync(resolverDir)].map((e) => e.name), ["alpha"]);
    // A new version replaces the copy and the loaded one.
    const v2 = await makeAdapter("alpha", { seed: 2, baseModel: "tiny-llama" });
    await vllm.attach(fake.server, v2, FAST);
    assert.deepEqual(
      await Deno.readFile(join(copy, "adapter_model.safetensors")),
      await Deno.readFile(join(v2.path, "adapter_model.safetensors")),
    );
    assert.deepEqual([...Deno.readDirSync(resolverDir)].map((e) => e.name), ["alpha"]);
    await vllm.detach(fake.server, "alpha", FAST);
    assert.deepEqual([...Deno.readDirSync(resolverDir)], []);
    assert.deepEqual(await vllm.list(fake.server, FAST), []);
  });
});

Deno.test("vllm: resolver mode refuses an adapter of another base model before copying", async () => {
  const resolverDir = freshPath("resolver");
  await withVllm({ resolverDir }, async (fake) => {
    const other = await makeAdapter("alpha", { baseModel: "some/other-model" });
    const error = await vllm.attach(fake.server, other, FAST).catch((e) => e);
    assert.ok(error instanceof AttachError, String(error));
    assert.match(error.message, /"some\/other-model".*"tiny-llama"/);
    assert.deepEqual(fake.requests, []);
    await assert.rejects(Deno.stat(join(resolverDir, "alpha")), Deno.errors.NotFound);
  });
});

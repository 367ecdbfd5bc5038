/**
 * SGLang: the conformance suite against the fake, plus its own ways: the list kept from load answers and
 * confirmed by the server, a new version swapped in by unload + load, and the server's own refusals.
 */

import assert from "node:assert/strict";
import { AttachError } from "../../plugins/types.ts";
import { sglangPlugin } from "../../plugins/sglang/mod.ts";
import { makeAdapter } from "./adapters.ts";
import { conformance, FAST } from "./conformance.ts";
import { type SglangOptions, startSglang } from "./fakes/sglang.ts";

conformance("sglang", () => startSglang({ token: "secret" }));
conformance(
  "sglang",
  () => startSglang({ token: "secret", listsAdapters: true }),
  {},
  "listing in /v1/models",
);

async function withSglang(
  options: SglangOptions,
  body: (fake: Awaited<ReturnType<typeof startSglang>>) => Promise<void>,
) {
  const fake = await startSglang(options);
  try {
    await body(fake);
  } finally {
    await fake.close();
  }
}

Deno.test("sglang: list starts from the adapters the server was started with, then follows load answers", async () => {
  const early = await makeAdapter("early"), late = await makeAdapter("late");
  await withSglang({ startup: [early] }, async (fake) => {
    const plugin = sglangPlugin(); // has seen no answer from this server yet
    assert.deepEqual(await plugin.list(fake.server, FAST), ["early"]);
    await plugin.attach(fake.server, late, FAST);
    assert.deepEqual(await plugin.list(fake.server, FAST), ["early", "late"]);
    // A name the plugin remembers but the server no longer has (a restart) is dropped by the confirmation.
    await unloadBehindTheBack(fake, "late");
    assert.deepEqual(await plugin.list(fake.server, FAST), ["early"]);
    assert.equal((await plugin.verify(fake.server, late, FAST)).listed, false);
  });
});

/** Unloads through the server's route directly, as another client would. */
async function unloadBehindTheBack(fake: { server: { url: string; token?: string } }, name: string) {
  const res = await fetch(`${fake.server.url}/unload_lora_adapter`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${fake.server.token}` },
    body: JSON.stringify({ lora_name: name }),
  });
  assert.equal(res.status, 200, await res.text());
}

Deno.test("sglang: a new version under a loaded name is swapped in by unload, then load", async () => {
  await withSglang({}, async (fake) => {
    const plugin = sglangPlugin();
    const v1 = await makeAdapter("alpha", { seed: 1 }), v2 = await makeAdapter("alpha", { seed: 2 });
    await plugin.attach(fake.server, v1, FAST);
    const before = fake.requests.length;
    const result = await plugin.attach(fake.server, v2, FAST);
    assert.deepEqual(fake.requests.slice(before, before + 3), [
      "POST /load_lora_adapter",
      "POST /unload_lora_adapter",
      "POST /load_lora_adapter",
    ]);
    assert.equal(fake.loaded.get("alpha")?.path, v2.path);
    assert.equal(result.verification.changesOutput, true);
    assert.match(result.verification.detail, new RegExp(`loaded from ${v2.path}`));
  });
});

Deno.test("sglang: the server's refusal (rank above --max-lora-rank) keeps its 400 and message", async () => {
  await withSglang({ maxLoraRank: 2 }, async (fake) => {
    const error = await sglangPlugin().attach(fake.server, await makeAdapter("wide", { rank: 4 }), FAST)
      .catch((e) => e);
    assert.ok(error instanceof AttachError, String(error));
    assert.equal(error.status, 400);
    assert.equal(error.serverMessage, "LoRA adapter wide has rank 4, above --max-lora-rank 2");
    assert.equal(
      fake.requests.filter((r) => r === "POST /load_lora_adapter").length,
      1,
      "a 400 is not retried",
    );
  });
});

Deno.test("sglang: a server that lists adapters in /v1/models is read there, without confirmation completions", async () => {
  const early = await makeAdapter("early"), late = await makeAdapter("late");
  await withSglang({ startup: [early], listsAdapters: true }, async (fake) => {
    const plugin = sglangPlugin();
    await plugin.attach(fake.server, late, FAST);
    const before = fake.requests.length;
    assert.deepEqual(await plugin.list(fake.server, FAST), ["early", "late"]);
    assert.deepEqual(fake.requests.slice(before), ["GET /v1/models"]);
    // Gone behind the plugin's back (a restart): gone from the list, and no longer verified.
    await unloadBehindTheBack(fake, "late");
    assert.deepEqual(await plugin.list(fake.server, FAST), ["early"]);
    assert.equal((await plugin.verify(fake.server, late, FAST)).listed, false);
  });
});

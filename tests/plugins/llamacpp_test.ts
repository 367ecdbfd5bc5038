/**
 * llama.cpp: the conformance suite against the fake (adapters preloaded as `--lora <name>.gguf`), plus rescaling
 * without disturbing the other adapters, and the message for an adapter that was not preloaded.
 */

import assert from "node:assert/strict";
import { PLUGINS } from "../../plugins/mod.ts";
import { UnsupportedError } from "../../plugins/types.ts";
import { makeAdapter } from "./adapters.ts";
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

Deno.test("llamacpp: an adapter that was not preloaded says llama.cpp cannot load at run time and how to start it", async () => {
  const fake = await startLlamacpp({ loras: [ggufPath("other")] });
  try {
    const error = await llamacpp.attach(fake.server, await makeAdapter("beta"), FAST).catch((e) => e);
    assert.ok(error instanceof UnsupportedError, String(error));
    assert.match(error.message, /llama\.cpp cannot load adapters at run time/);
    assert.match(error.message, /--lora beta\.gguf/);
    assert.match(error.message, /Preloaded: \/models\/lora\/other\.gguf/);
    assert.deepEqual(fake.requests, ["GET /lora-adapters"]);
    assert.deepEqual(fake.scales, [0]);
  } finally {
    await fake.close();
  }
});

/**
 * LoRAX: the conformance suite against the fake, plus the padding rule (a projection missing in any layer is
 * dropped in all), the adapter folder as the only "load", and all-or-nothing attaches.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { PLUGINS } from "../../plugins/mod.ts";
import { installCopy, listFolders } from "../../plugins/files.ts";
import { AttachError } from "../../plugins/types.ts";
import { makeAdapter } from "./adapters.ts";
import { conformance, FAST } from "./conformance.ts";
import { downUrl } from "./fakes/common.ts";
import { type LoraxOptions, startLorax } from "./fakes/lorax.ts";

conformance("lorax", () => startLorax({ token: "secret" }), { newVersion: "refused", evictsOnDetach: false });

const lorax = PLUGINS.lorax;

async function withLorax(
  options: LoraxOptions,
  body: (fake: Awaited<ReturnType<typeof startLorax>>) => Promise<void>,
) {
  const fake = await startLorax(options);
  try {
    await body(fake);
  } finally {
    await fake.close();
  }
}

const dirOf = (fake: { server: { options?: Readonly<Record<string, unknown>> } }) =>
  fake.server.options!.adapterDir as string;

Deno.test("lorax: an adapter of some layers only is refused with the --pad-layers hint, before any copy or request", async () => {
  await withLorax({}, async (fake) => {
    const partial = await makeAdapter("partial", { layers: [1] });
    const error = await lorax.attach(fake.server, partial, FAST).catch((e) => e);
    assert.ok(error instanceof AttachError, String(error));
    assert.match(error.message, /lacks q_proj in layers 0, 2; v_proj in layers 0, 2 \(of 3\)/);
    assert.match(error.message, /export it with --pad-layers/);
    assert.deepEqual(fake.requests, []);
    assert.deepEqual(await listFolders(dirOf(fake)), []);
    // The same layers, padded with zeros as `finetune --pad-layers` writes them, are accepted and take effect.
    const padded = await makeAdapter("padded", { layers: [1], padLayers: true });
    const result = await lorax.attach(fake.server, padded, FAST);
    assert.equal(result.verification.changesOutput, true);
  });
});

Deno.test("lorax: why padding matters: the fake, like LoRAX, ignores an unpadded adapter", async () => {
  await withLorax({}, async (fake) => {
    const partial = await makeAdapter("partial", { layers: [1] });
    await installCopy(partial.path, dirOf(fake), "partial", { replace: false });
    const v = await lorax.verify(fake.server, partial, FAST);
    assert.deepEqual([v.listed, v.changesOutput], [true, false]);
  });
});

Deno.test("lorax: the layer count comes from options.numLayers when the base model is not a local folder", async () => {
  await withLorax({}, async (fake) => {
    const remote = await makeAdapter("remote", { baseModel: "org/remote-model" });
    const error = await lorax.attach(fake.server, remote, FAST).catch((e) => e);
    assert.match(error.message, /set 'options.numLayers'/);
    const configured = { ...fake.server, options: { ...fake.server.options, numLayers: 3 } };
    assert.equal((await lorax.attach(configured, remote, FAST)).verification.changesOutput, true);
    const deeper = { ...fake.server, options: { ...fake.server.options, numLayers: 4 } };
    const other = await makeAdapter("other", { baseModel: "org/remote-model" });
    assert.match((await lorax.attach(deeper, other, FAST).catch((e) => e)).message, /in layers 3 \(of 4\)/);
  });
});

Deno.test("lorax: requests name the copied folder as a local adapter_id; the same files again are accepted", async () => {
  await withLorax({}, async (fake) => {
    const alpha = await makeAdapter("alpha");
    await lorax.attach(fake.server, alpha, FAST);
    const id = join(dirOf(fake), "alpha");
    assert.deepEqual([...new Set(fake.adapterIds)], [id]);
    assert.deepEqual(
      await Deno.readFile(join(id, "adapter_model.safetensors")),
      await Deno.readFile(join(alpha.path, "adapter_model.safetensors")),
    );
    assert.equal((await lorax.attach(fake.server, alpha, FAST)).verification.listed, true);
  });
});

Deno.test("lorax: an attach that cannot be verified leaves no folder behind", async () => {
  await withLorax({}, async (fake) => {
    const error = await lorax.attach({ ...fake.server, url: downUrl() }, await makeAdapter("alpha"), FAST)
      .catch((e) => e);
    assert.ok(error instanceof AttachError, String(error));
    assert.deepEqual(await listFolders(dirOf(fake)), []);
    assert.deepEqual([...Deno.readDirSync(dirOf(fake))], []);
  });
});

Deno.test("lorax: a server without options.adapterDir is a configuration error naming the option", async () => {
  await withLorax({}, async (fake) => {
    const error = await lorax.attach({ ...fake.server, options: {} }, await makeAdapter("alpha"), FAST)
      .catch((e) => e);
    assert.match(error.message, /needs 'options.adapterDir'/);
  });
});

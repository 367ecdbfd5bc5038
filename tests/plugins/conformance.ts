/**
 * The one suite every server plugin runs, against its fake server: attach, attach again, detach, a server that
 * is down, transient 500s, missing capabilities, bad adapters, reachability, aborts. Each kind's test file calls
 * {@link conformance} with its fake and adds the cases only its server has.
 */

import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { PLUGINS } from "../../plugins/mod.ts";
import { fileDigest } from "../../plugins/files.ts";
import {
  type AdapterRef,
  AttachError,
  type CallContext,
  type ServerKind,
  UnsupportedError,
} from "../../plugins/types.ts";
import { freshPath, makeAdapter } from "./adapters.ts";
import { adapterIdentity, downUrl, type FakeServer } from "./fakes/common.ts";

/** What a fake needs to know before it starts. */
export interface Setup {
  /** The adapters the test will attach (llama.cpp's fake preloads them, as `--lora <name>.gguf` would). */
  readonly adapters: readonly AdapterRef[];
}

/** Starts a fake for one test. */
export type MakeServer = (setup: Setup) => Promise<FakeServer>;

/** Where servers legitimately differ. */
export interface Expectations {
  /**
   * Attaching a new version (new folder) under an attached name: the server then serves the new weights
   * ("served", the default), refuses with UnsupportedError ("refused": LoRAX caches adapters by id), or
   * re-enables the one preloaded file ("preloaded": llama.cpp).
   */
  readonly newVersion?: "served" | "refused" | "preloaded";
  /** Detach stops the server serving the adapter (default true; LoRAX keeps its cache until it evicts). */
  readonly evictsOnDetach?: boolean;
}

/** Quick retries, so failure cases stay fast: 2 retries after 10 and 20 ms. */
export const FAST: CallContext = { fetch, retries: 2, backoffMs: 10 };

/** A fetch that counts its calls. */
export function countingFetch(): { fetch: typeof fetch; calls: () => number } {
  let calls = 0;
  return {
    fetch: (input, init) => {
      calls++;
      return fetch(input, init);
    },
    calls: () => calls,
  };
}

async function withServer(
  make: MakeServer,
  adapters: readonly AdapterRef[],
  body: (s: FakeServer) => Promise<void>,
) {
  const fake = await make({ adapters });
  try {
    await body(fake);
  } finally {
    await fake.close();
  }
}

/** Names and digests of a folder's files, to show nothing was written into it. */
async function snapshot(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).sort();
  return await Promise.all(names.map(async (n) => `${n}:${await fileDigest(`${dir}/${n}`)}`));
}

/** Registers the suite's tests for `kind`; `variant` names a second configuration of the same kind in test names. */
export function conformance(
  kind: ServerKind,
  makeServer: MakeServer,
  expect: Expectations = {},
  variant?: string,
): void {
  const plugin = PLUGINS[kind];
  const name = variant ? `${kind} (${variant})` : kind;
  const caps = plugin.capabilities({ name: "capabilities", kind, url: "http://127.0.0.1:9" });
  const changed = caps.generate ? true : null;

  Deno.test(`${name}: attach loads, verifies and lists the adapter, and never writes into its folder`, async () => {
    const alpha = await makeAdapter("alpha");
    const before = await snapshot(alpha.path);
    await withServer(makeServer, [alpha], async (fake) => {
      const result = await plugin.attach(fake.server, alpha, FAST);
      assert.equal(result.server, fake.server.name);
      assert.equal(result.adapter, "alpha");
      assert.equal(result.attempts, 1);
      assert.ok(result.millis >= 0);
      assert.equal(result.verification.listed, true, result.verification.detail);
      assert.equal(result.verification.changesOutput, changed, result.verification.detail);
      assert.deepEqual(await plugin.list(fake.server, FAST), ["alpha"]);
      const again = await plugin.verify(fake.server, alpha, FAST);
      assert.deepEqual([again.listed, again.changesOutput], [true, changed]);
      assert.notEqual(await fake.serving("alpha"), null);
    });
    assert.deepEqual(await snapshot(alpha.path), before);
  });

  Deno.test(`${name}: a new version under the same name (new folder)`, async () => {
    const v1 = await makeAdapter("alpha", { seed: 1 }), v2 = await makeAdapter("alpha", { seed: 2 });
    await withServer(makeServer, [v1], async (fake) => {
      await plugin.attach(fake.server, v1, FAST);
      const first = await fake.serving("alpha");
      switch (expect.newVersion ?? "served") {
        case "served": {
          const result = await plugin.attach(fake.server, v2, FAST);
          assert.equal(result.verification.listed, true, result.verification.detail);
          assert.equal(await fake.serving("alpha"), await adapterIdentity(v2.path));
          assert.notEqual(await fake.serving("alpha"), first);
          break;
        }
        case "refused":
          await assert.rejects(plugin.attach(fake.server, v2, FAST), UnsupportedError);
          assert.equal(await fake.serving("alpha"), first);
          break;
        case "preloaded": {
          const result = await plugin.attach(fake.server, v2, FAST);
          assert.equal(result.verification.listed, true, result.verification.detail);
          assert.equal(await fake.serving("alpha"), first);
        }
      }
      assert.deepEqual(await plugin.list(fake.server, FAST), ["alpha"]);
    });
  });

  Deno.test(`${name}: detach takes the adapter off the list; detaching it again is an AttachError`, async () => {
    const alpha = await makeAdapter("alpha");
    await withServer(makeServer, [alpha], async (fake) => {
      await plugin.attach(fake.server, alpha, FAST);
      await plugin.detach(fake.server, "alpha", FAST);
      assert.deepEqual(await plugin.list(fake.server, FAST), []);
      if (expect.evictsOnDetach ?? true) assert.equal(await fake.serving("alpha"), null);
      await assert.rejects(plugin.detach(fake.server, "alpha", FAST), AttachError);
    });
  });

  Deno.test(`${name}: a server that is down gets retries+1 attempts, backed off, then an AttachError`, async () => {
    const alpha = await makeAdapter("alpha");
    await withServer(makeServer, [alpha], async (fake) => {
      const counting = countingFetch();
      const started = performance.now();
      const error = await plugin.attach({ ...fake.server, url: downUrl() }, alpha, {
        ...FAST,
        fetch: counting.fetch,
      })
        .catch((e) => e);
      const millis = performance.now() - started;
      assert.ok(error instanceof AttachError, String(error));
      assert.match(error.message, /3 attempts/);
      assert.equal(error.status, undefined);
      assert.equal(counting.calls(), 3);
      assert.ok(millis >= 30 && millis < 5000, `backoff 10 + 20 ms, took ${millis} ms`);
      assert.equal(fake.requests.length, 0);
    });
  });

  Deno.test(`${name}: two 500s, then success, reported as 3 attempts`, async () => {
    const alpha = await makeAdapter("alpha");
    await withServer(makeServer, [alpha], async (fake) => {
      fake.failNext(2);
      const result = await plugin.attach(fake.server, alpha, FAST);
      assert.equal(result.attempts, 3);
      assert.equal(result.verification.listed, true, result.verification.detail);
      assert.equal(result.verification.changesOutput, changed);
    });
  });

  const lacking = (Object.keys(caps) as (keyof typeof caps)[]).filter((c) => !caps[c]);
  Deno.test({
    name: `${name}: capabilities it lacks (${lacking.join(", ") || "none"}) throw UnsupportedError`,
    ignore: lacking.length === 0,
    fn: async () => {
      const alpha = await makeAdapter("alpha"), beta = await makeAdapter("beta");
      await withServer(makeServer, [alpha], async (fake) => {
        if (!caps.load) {
          const error = await plugin.attach(fake.server, beta, FAST).catch((e) => e);
          assert.ok(error instanceof UnsupportedError, String(error));
          assert.match(error.message, /beta/);
        }
        if (!caps.unload) await assert.rejects(plugin.detach(fake.server, "alpha", FAST), UnsupportedError);
        if (!caps.list) await assert.rejects(plugin.list(fake.server, FAST), UnsupportedError);
        if (!caps.generate) assert.equal((await plugin.verify(fake.server, alpha, FAST)).changesOutput, null);
      });
    },
  });

  Deno.test(`${name}: a bad adapter is an AttachError before any request`, async () => {
    const big = await makeAdapter("big", { rank: 8 });
    const empty = freshPath("empty");
    await Deno.mkdir(empty);
    await withServer(makeServer, [big], async (fake) => {
      const limited = { ...fake.server, options: { ...fake.server.options, maxLoraRank: 4 } };
      const cases: [AdapterRef, RegExp][] = [
        [big, /rank 8 is above the server's maximum LoRA rank 4/],
        [{ name: "empty", path: empty, rank: 8 }, /adapter_config\.json/],
        [{ ...big, rank: 16 }, /has rank 8, but the adapter was given as rank 16/],
        [{ ...big, name: ".." }, /adapter name must be 1-64 characters/],
      ];
      for (const [adapter, message] of cases) {
        const error = await plugin.attach(limited, adapter, FAST).catch((e) => e);
        assert.ok(error instanceof AttachError, String(error));
        assert.match(error.message, message);
      }
      await assert.rejects(plugin.detach(fake.server, "..", FAST), /adapter name must be 1-64 characters/);
      assert.deepEqual(fake.requests, []);
    });
  });

  Deno.test(`${name}: reachable is true for a server that answers, false for one that is down`, async () => {
    await withServer(makeServer, [], async (fake) => {
      assert.equal(await plugin.reachable(fake.server, FAST), true);
      assert.equal(await plugin.reachable({ ...fake.server, url: downUrl() }, FAST), false);
    });
  });

  Deno.test(`${name}: an abort stops the retries at once`, async () => {
    const alpha = await makeAdapter("alpha");
    await withServer(makeServer, [alpha], async (fake) => {
      const controller = new AbortController();
      const started = performance.now();
      setTimeout(() => controller.abort(), 50);
      const ctx = { fetch, retries: 5, backoffMs: 10_000, signal: controller.signal };
      const error = await plugin.attach({ ...fake.server, url: downUrl() }, alpha, ctx).catch((e) => e);
      assert.equal((error as Error).name, "AbortError");
      assert.ok(performance.now() - started < 2000);
    });
  });
}

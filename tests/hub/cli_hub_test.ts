/**
 * Hub ids on the command line: `--model org/name` through the Hugging Face environment variables, against the
 * fake Hub; the same results as the local folder, progress on stderr, offline reuse, and errors that say what to do.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { flexora, flexoraJson, tempJsonl, TINY, tinyRows } from "../cli/run.ts";
import { commitId, FakeHub, folderFiles } from "./fake_hub.ts";

const C1 = commitId("cli");

Deno.test("--model org/name downloads once (progress on stderr), scores like the folder, then works offline", async () => {
  const hub = new FakeHub({
    "org/tiny": { commits: { [C1]: await folderFiles(TINY) }, refs: { main: C1 } },
    "org/gated": { commits: { [C1]: await folderFiles(TINY) }, refs: { main: C1 }, token: "hf_x" },
  });
  const tmp = await Deno.makeTempDir({ prefix: "flexora-hub-cli-" });
  const vars = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(tmp, "cache"), HF_HUB_OFFLINE: "0", HF_TOKEN: "" };
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    const data = await tempJsonl(tmp, "test.jsonl", (await tinyRows("test")).slice(0, 8));
    const args = ["--data", data, "--device", "cpu", "--json"];
    const first = await flexora("score", "--model", "org/tiny", ...args);
    assert.equal(first.code, 0, first.err);
    assert.match(first.err, /download model\.safetensors .*MiB/);
    const local = await flexoraJson("score", "--model", TINY, ...args);
    assert.deepEqual(JSON.parse(first.out), local);
    Deno.env.set("HF_HUB_OFFLINE", "1");
    const requests = hub.requests.length;
    assert.deepEqual(await flexoraJson("score", "--model", "org/tiny", ...args), local);
    assert.equal(hub.requests.length, requests, "offline: no request");
    const missing = await flexora("score", "--model", "org/other", ...args);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /HF_HUB_OFFLINE is set, and the cache at .* lacks/);
    Deno.env.set("HF_HUB_OFFLINE", "0");
    const gated = await flexora("score", "--model", "org/gated", ...args);
    assert.equal(gated.code, 1);
    assert.match(gated.err, /flexora score: org\/gated\/config.json@.*401.*set HF_TOKEN/);
  } finally {
    for (const [k, v] of Object.entries(saved)) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    await hub.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

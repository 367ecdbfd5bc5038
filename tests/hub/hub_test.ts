/**
 * The Hub layer against a fake Hub on 127.0.0.1 (tests/hub/fake_hub.ts): first download into the Hugging Face
 * cache layout, cache hits without network, revision pinning, resumed downloads, corruption, gated repositories,
 * offline mode, and `--model` resolution (a folder that exists wins).
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { downloadModel, type DownloadModelOptions, HubError, type HubErrorKind } from "../../src/hub/mod.ts";
import { modelDir } from "../../src/hub/source.ts";
import { loadModel } from "../../src/model/model.ts";
import { commitId, FakeHub, folderFiles } from "./fake_hub.ts";

const FIXTURES = fileURLToPath(new URL("../../fixtures/", import.meta.url));
const C1 = commitId("first"), C2 = commitId("second");
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const text = (s: string) => new TextEncoder().encode(s);

/** Repos: a single-file model with two commits (main and tag v1), a sharded one, and a gated one. */
async function repos() {
  const single = await folderFiles(join(FIXTURES, "tiny-llama"));
  const sharded = await folderFiles(join(FIXTURES, "tiny-llama-bf16-sharded"));
  const extra = { "README.md": text("# tiny"), "pytorch_model.bin": text("not needed") };
  const second = {
    ...single,
    "config.json": text(new TextDecoder().decode(single["config.json"]).replace("{", '{"_v":2,')),
  };
  return {
    "org/tiny": {
      commits: { [C1]: { ...single, ...extra }, [C2]: { ...second, ...extra } },
      refs: { main: C2, v1: C1 },
    },
    "org/sharded": { commits: { [C1]: { ...sharded, ...extra } }, refs: { main: C1 } },
    "org/gated": { commits: { [C1]: single }, refs: { main: C1 }, token: "hf_secret" },
  };
}

async function withHub(
  fn: (hub: FakeHub, opts: (o?: object) => DownloadModelOptions, cache: string) => Promise<void>,
) {
  const hub = new FakeHub(await repos());
  const cache = await Deno.makeTempDir({ prefix: "flexora-hub-" });
  const opts = (o: object = {}): DownloadModelOptions => ({
    settings: { endpoint: hub.url, cacheDir: cache, offline: false, ...o },
  });
  try {
    await fn(hub, opts, cache);
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
}

async function rejectsKind(p: Promise<unknown>, kind: HubErrorKind, pattern: RegExp) {
  await assert.rejects(p, (e) => {
    assert(e instanceof HubError, String(e));
    assert.equal(e.kind, kind, e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("first download fills the Hugging Face cache layout with only the files a model needs", async () => {
  await withHub(async (hub, opts, cache) => {
    const progress: number[] = [];
    const snap = await downloadModel("org/sharded", {
      ...opts(),
      onProgress: (p) => progress.push(p.received),
    });
    const folder = join(cache, "models--org--sharded");
    assert.equal(snap.dir, join(folder, "snapshots", C1));
    assert.equal((await Deno.readTextFile(join(folder, "refs", "main"))).trim(), C1);
    const index = JSON.parse(await Deno.readTextFile(join(snap.dir, "model.safetensors.index.json")));
    const shards = [...new Set(Object.values(index.weight_map))].sort();
    assert.deepEqual(
      [...snap.downloaded].sort(),
      [
        ...["config.json", "generation_config.json", "model.safetensors.index.json"],
        ...shards as string[],
        ...["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"],
      ].sort(),
    );
    assert(!hub.requests.some((r) => /README|pytorch_model/.test(r.path)), "unneeded files are not fetched");
    // snapshots hold relative links into blobs/, LFS blobs are named by their sha256 (as huggingface_hub does)
    const link = await Deno.readLink(join(snap.dir, shards[0] as string));
    assert.match(link, /^\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/);
    assert.match(await Deno.readLink(join(snap.dir, "config.json")), /^\.\.\/\.\.\/blobs\/[0-9a-f]{40}$/);
    assert(progress.length > 0);
    const model = await loadModel("org/sharded", { hub: opts() });
    assert.equal(model.dir, snap.dir);
    assert.equal(model.config.numLayers, 3);
  });
});

Deno.test("a filled cache is used without fetching files again, and without network at all", async () => {
  await withHub(async (hub, opts) => {
    const first = await downloadModel("org/tiny", opts());
    const before = hub.requests.length;
    const again = await downloadModel("org/tiny", opts());
    assert.equal(again.dir, first.dir);
    assert.deepEqual(again.downloaded, []);
    assert.deepEqual(hub.requests.slice(before).map((r) => r.path), ["/api/models/org/tiny/revision/main"]);
    const offline = await downloadModel("org/tiny", opts({ offline: true }));
    assert.equal(offline.dir, first.dir);
    assert.equal(hub.requests.length, before + 1, "HF_HUB_OFFLINE makes no request");
    await hub.close();
    const warnings: string[] = [];
    const unreachable = await downloadModel("org/tiny", { ...opts(), onWarning: (w) => warnings.push(w) });
    assert.equal(unreachable.dir, first.dir);
    assert.match(warnings.join(), /cannot be reached.*using the cached snapshot/);
  });
});

Deno.test("revisions: a tag or a commit pins the files, and refs/<tag> records the commit", async () => {
  await withHub(async (_hub, opts, cache) => {
    const main = await downloadModel("org/tiny", opts());
    const tag = await downloadModel("org/tiny@v1", opts());
    const pinned = await downloadModel(`org/tiny@${C1}`, opts());
    assert.equal(main.commit, C2);
    assert.equal(tag.commit, C1);
    assert.equal(pinned.dir, tag.dir);
    assert.match(await Deno.readTextFile(join(main.dir, "config.json")), /"_v":2/);
    assert.doesNotMatch(await Deno.readTextFile(join(tag.dir, "config.json")), /"_v"/);
    assert.equal((await Deno.readTextFile(join(cache, "models--org--tiny", "refs", "v1"))).trim(), C1);
    // the weights are the same bytes in both commits: one blob, two links
    const blobs = [...Deno.readDirSync(join(cache, "models--org--tiny", "blobs"))].map((e) => e.name);
    assert.equal(blobs.filter((b) => /^[0-9a-f]{64}$/.test(b)).length, 1);
    await rejectsKind(
      downloadModel("org/tiny@nope", opts()),
      "not-found",
      /no such revision in org\/tiny.*404/,
    );
    await rejectsKind(downloadModel("org/none", opts()), "not-found", /no model repository org\/none/);
  });
});

Deno.test("an interrupted download resumes with a range request and ends verified", async () => {
  await withHub(async (hub, opts, cache) => {
    hub.interrupt.add("model.safetensors");
    const snap = await downloadModel("org/tiny", opts());
    const cdn = hub.requests.filter((r) => r.server === "cdn");
    assert.equal(cdn.length, 2);
    assert.equal(cdn[0].range, null);
    const size = (await Deno.stat(join(snap.dir, "model.safetensors"))).size;
    assert.equal(cdn[1].range, `bytes=${size >> 1}-`);
    const original = await Deno.readFile(join(FIXTURES, "tiny-llama", "model.safetensors"));
    assert.deepEqual(await Deno.readFile(join(snap.dir, "model.safetensors")), original);
    // a partial file left by a killed process is resumed by the next run
    const blobs = join(cache, "models--org--sharded", "blobs");
    const files = await folderFiles(join(FIXTURES, "tiny-llama-bf16-sharded"));
    const shard = Object.keys(files).find((f) => f.endsWith(".safetensors"))!;
    const hex = sha256(files[shard]);
    await Deno.mkdir(blobs, { recursive: true });
    await Deno.writeFile(join(blobs, `${hex}.incomplete`), files[shard].slice(0, 100));
    hub.requests.length = 0;
    await downloadModel("org/sharded", opts());
    assert(hub.requests.some((r) => r.server === "cdn" && r.range === "bytes=100-"), "resumed at byte 100");
  });
});

Deno.test("a corrupted transfer is detected by sha256, deleted, and not linked into the snapshot", async () => {
  await withHub(async (hub, opts, cache) => {
    hub.corrupt.add("model.safetensors");
    await rejectsKind(
      downloadModel("org/tiny", opts()),
      "corrupt",
      /model.safetensors: .*sha256 [0-9a-f]{64}, expected/,
    );
    const blobs = [...Deno.readDirSync(join(cache, "models--org--tiny", "blobs"))].map((e) => e.name);
    assert(!blobs.some((b) => /^[0-9a-f]{64}/.test(b)), `no weights blob kept: ${blobs}`);
    hub.corrupt.clear();
    const snap = await downloadModel("org/tiny", opts());
    assert.equal((await loadModel(snap.dir)).config.numLayers, 3);
  });
});

Deno.test("a gated repository asks for HF_TOKEN; the token goes to the Hub but never to the CDN", async () => {
  await withHub(async (hub, opts) => {
    await rejectsKind(downloadModel("org/gated", opts()), "gated", /401.*set HF_TOKEN.*licence/);
    await rejectsKind(
      downloadModel("org/gated", opts({ token: "hf_wrong" })),
      "gated",
      /HF_TOKEN has no access/,
    );
    hub.requests.length = 0;
    await downloadModel("org/gated", opts({ token: "hf_secret" }));
    assert(hub.requests.filter((r) => r.server === "hub").every((r) => r.auth === "Bearer hf_secret"));
    const cdn = hub.requests.filter((r) => r.server === "cdn");
    assert(cdn.length > 0 && cdn.every((r) => r.auth === null));
  });
});

Deno.test("offline mode and an unreachable Hub with an empty cache say what to do", async () => {
  await withHub(async (hub, opts) => {
    await rejectsKind(
      downloadModel("org/tiny", opts({ offline: true })),
      "offline",
      /HF_HUB_OFFLINE is set.*connect/,
    );
    assert.equal(hub.requests.length, 0);
    await downloadModel("org/tiny@v1", opts());
    await rejectsKind(
      downloadModel("org/tiny", opts({ offline: true })),
      "offline",
      /lacks the revision 'main'/,
    );
    await hub.close();
    await rejectsKind(downloadModel("org/sharded", opts()), "offline", /cannot be reached.*lacks/);
  });
});

Deno.test("a full disk is reported as such, keeping what was received", async () => {
  if (Deno.build.os !== "linux") return; // /dev/full
  await withHub(async (hub, _opts, cache) => {
    const files = await folderFiles(join(FIXTURES, "tiny-llama"));
    const hex = sha256(files["model.safetensors"]);
    const blobs = join(cache, "models--org--tiny", "blobs");
    await Deno.mkdir(blobs, { recursive: true });
    await Deno.symlink("/dev/full", join(blobs, `${hex}.incomplete`));
    // a child process, because opening /dev/full needs --allow-all
    const child = new URL("./download_child.ts", import.meta.url).pathname;
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", child, hub.url, cache, "org/tiny"],
      stderr: "inherit",
    }).output();
    const result = JSON.parse(new TextDecoder().decode(run.stdout));
    assert.equal(result.kind, "disk-full", result.message);
    assert.match(result.message, /disk full while writing .*HF_HUB_CACHE/);
    assert(hub.requests.length > 0);
  });
});

Deno.test("--model: a folder that exists wins over a Hub id of the same shape", async () => {
  await withHub(async (hub, opts) => {
    const cwd = Deno.cwd();
    Deno.chdir(join(FIXTURES, ".."));
    try {
      assert.equal(await modelDir("fixtures/tiny-llama", opts()), join(FIXTURES, "tiny-llama"));
      assert.equal(hub.requests.length, 0);
      await rejectsKind(
        modelDir("fixtures/nope", opts()),
        "not-found",
        /no local folder "fixtures\/nope" either/,
      );
      await assert.rejects(modelDir("./nope", opts()), /no such folder, and not a Hub id/);
    } finally {
      Deno.chdir(cwd);
    }
  });
});

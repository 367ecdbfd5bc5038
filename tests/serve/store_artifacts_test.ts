/**
 * Folders in and out of the store: a checkpoint folder read while the runner replaces it (only complete stage
 * folders), the newer of a local and a stored checkpoint kept per stage, stored adapters written out dated as
 * stored.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  materialize,
  readCheckpoints,
  readFolder,
  restoreCheckpoints,
  syncAdapters,
  writeFolder,
} from "../../src/serve/store/artifacts.ts";
import { SqliteStore } from "../../src/serve/store/mod.ts";

const bytes = (...b: number[]) => new Uint8Array(b);
const manifest = (seconds: number) => new TextEncoder().encode(JSON.stringify({ seconds }));

async function withDir(fn: (dir: string, store: SqliteStore) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "flexora-artifacts-" });
  const store = new SqliteStore(":memory:");
  try {
    await fn(dir, store);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a folder round trips; a file outside it is refused and nothing is left", () =>
  withDir(async (dir) => {
    const files = new Map([["a", bytes(1)], ["deep/er/b", bytes(2, 3)]]);
    await writeFolder(join(dir, "out"), files);
    assert.deepEqual(await readFolder(join(dir, "out")), files);
    await writeFolder(join(dir, "out"), new Map([["c", bytes(4)]]));
    assert.deepEqual([...(await readFolder(join(dir, "out")))!.keys()], ["c"], "replaced whole");
    assert.equal(await readFolder(join(dir, "missing")), null);
    await assert.rejects(
      () => writeFolder(join(dir, "evil"), new Map([["../x", bytes(1)]])),
      /outside its folder/,
    );
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["out"]);
  }));

Deno.test("checkpoints: only complete stage folders are read, not the runner's half-written or discarded ones", () =>
  withDir(async (dir) => {
    await writeFolder(
      join(dir, "search"),
      new Map([["checkpoint.json", manifest(3)], ["state.safetensors", bytes(9)]]),
    );
    await writeFolder(join(dir, "retrain.tmp-1234abcd"), new Map([["checkpoint.json", manifest(1)]]));
    await writeFolder(join(dir, "retrain"), new Map([["state.safetensors", bytes(1)]])); // no manifest yet
    assert.deepEqual(
      [...(await readCheckpoints(dir)).keys()],
      ["search/checkpoint.json", "search/state.safetensors"],
    );
  }));

Deno.test("restoring checkpoints keeps, per stage, whichever of the folder's and the store's trained longer", () =>
  withDir(async (dir, store) => {
    await store.artifacts.put(
      "checkpoint",
      "job",
      new Map([
        ["search/checkpoint.json", manifest(10)],
        ["search/state.safetensors", bytes(1)],
        ["retrain/checkpoint.json", manifest(2)],
        ["retrain/state.safetensors", bytes(2)],
      ]),
    );
    const local = join(dir, "checkpoints");
    await writeFolder(
      join(local, "retrain"),
      new Map([["checkpoint.json", manifest(5)], ["state.safetensors", bytes(7)]]),
    );
    assert.equal(await restoreCheckpoints(store.artifacts, "job", local), true);
    assert.deepEqual(
      await Deno.readFile(join(local, "search", "state.safetensors")),
      bytes(1),
      "the store's",
    );
    assert.deepEqual(
      await Deno.readFile(join(local, "retrain", "state.safetensors")),
      bytes(7),
      "the newer local",
    );
    assert.equal(await restoreCheckpoints(store.artifacts, "none", join(dir, "empty")), false);
  }));

Deno.test("stored adapters missing here are written out, dated as stored; present ones are left alone", () =>
  withDir(async (dir, store) => {
    await store.artifacts.put("adapter", "sql/v1", new Map([["adapter_config.json", bytes(1)]]));
    await writeFolder(join(dir, "sql", "v2"), new Map([["adapter_config.json", bytes(2)]]));
    await store.artifacts.put("adapter", "sql/v2", new Map([["adapter_config.json", bytes(3)]]));
    await syncAdapters(store.artifacts, dir);
    assert.deepEqual(await Deno.readFile(join(dir, "sql", "v1", "adapter_config.json")), bytes(1));
    assert.deepEqual(await Deno.readFile(join(dir, "sql", "v2", "adapter_config.json")), bytes(2), "kept");
    const [stored] = await store.artifacts.list("adapter");
    assert.equal((await Deno.stat(join(dir, "sql", "v1"))).mtime?.toISOString(), stored.updatedAt);
    assert.equal(await materialize(store.artifacts, "adapter", "sql/v3", join(dir, "sql", "v3")), false);
  }));

/** Adapter folders servers read by path: atomic copies, swaps, removal, listing, digests. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { folderDigest, installCopy, listFolders, removeFolder } from "../../plugins/files.ts";
import { freshPath, makeAdapter } from "./adapters.ts";

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("installCopy copies plain files (a link's target, not the link) and leaves no temporary folder", async () => {
  const alpha = await makeAdapter("alpha");
  await Deno.symlink(join(alpha.path, "adapter_config.json"), join(alpha.path, "linked.json"));
  const parent = freshPath("parent");
  await installCopy(alpha.path, parent, "alpha", { replace: false });
  assert.deepEqual(names(parent), ["alpha"]);
  const copied = join(parent, "alpha", "linked.json");
  assert.equal((await Deno.lstat(copied)).isSymlink, false);
  assert.equal(
    await Deno.readTextFile(copied),
    await Deno.readTextFile(join(alpha.path, "adapter_config.json")),
  );
  assert.equal(await folderDigest(join(parent, "alpha")), await folderDigest(alpha.path));
});

Deno.test("installCopy replaces only when told to, and the new files are there afterwards", async () => {
  const v1 = await makeAdapter("alpha", { seed: 1 }), v2 = await makeAdapter("alpha", { seed: 2 });
  const parent = freshPath("parent");
  await installCopy(v1.path, parent, "alpha", { replace: false });
  await assert.rejects(installCopy(v2.path, parent, "alpha", { replace: false }), /already exists/);
  assert.equal(await folderDigest(join(parent, "alpha")), await folderDigest(v1.path));
  assert.deepEqual(names(parent), ["alpha"], "the failed copy's temporary folder is gone");
  await installCopy(v2.path, parent, "alpha", { replace: true });
  assert.equal(await folderDigest(join(parent, "alpha")), await folderDigest(v2.path));
  assert.notEqual(await folderDigest(v1.path), await folderDigest(v2.path));
  assert.deepEqual(names(parent), ["alpha"]);
});

Deno.test("listFolders lists adapter folders only; removeFolder says whether there was one", async () => {
  const parent = freshPath("parent");
  assert.deepEqual(await listFolders(parent), [], "a missing folder lists nothing");
  await installCopy((await makeAdapter("b")).path, parent, "b", { replace: false });
  await installCopy((await makeAdapter("a")).path, parent, "a", { replace: false });
  await Deno.mkdir(join(parent, "not-an-adapter"));
  await Deno.mkdir(join(parent, ".flexora-tmp-123"));
  await Deno.writeTextFile(join(parent, ".flexora-tmp-123", "adapter_config.json"), "{}");
  assert.deepEqual(await listFolders(parent), ["a", "b"]);
  assert.equal(await removeFolder(parent, "a"), true);
  assert.equal(await removeFolder(parent, "a"), false);
  assert.deepEqual(await listFolders(parent), ["b"]);
});

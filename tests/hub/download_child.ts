/**
 * `deno run -A tests/hub/download_child.ts ENDPOINT CACHE ID`: downloads ID and prints `{kind, message}` of the
 * HubError it got (or `{dir}`). hub_test.ts runs it in a child process where writing to /dev/full needs -A.
 */

import { downloadModel, HubError } from "../../src/hub/mod.ts";

const [endpoint, cacheDir, id] = Deno.args;
try {
  const snap = await downloadModel(id, { settings: { endpoint, cacheDir, offline: false } });
  console.log(JSON.stringify({ dir: snap.dir }));
} catch (e) {
  if (!(e instanceof HubError)) throw e;
  console.log(JSON.stringify({ kind: e.kind, message: e.message }));
}

/**
 * `--adapter DIR` on the CLI: an adapter that leaves the model unchanged, and one made for another model.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { readConfig } from "../../src/model/config.ts";
import { initLora, type LoraConfig, TARGET_MODULES } from "../../src/model/lora.ts";
import { writeAdapter } from "../../src/model/peft.ts";
import { STORIES } from "../model/shared.ts";
import { flexora, flexoraJson, TINY } from "./run.ts";

const tmp = await Deno.makeTempDir({ prefix: "flexora-adapter-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
const GREEDY = ["generate", "--model", STORIES, "--prompt-ids", "1", "--max-tokens", "16", "--device", "cpu"];

Deno.test("generate --adapter with a freshly initialised adapter (B = 0) gives the golden greedy ids", async () => {
  const lora: LoraConfig = { rank: 4, alpha: 8, rslora: false, targets: TARGET_MODULES, layers: [0, 4] };
  const dir = join(tmp, "fresh");
  await writeAdapter(dir, lora, initLora(await readConfig(STORIES), lora, 3));
  const out = await flexoraJson(...GREEDY, "--json", "--adapter", dir);
  // deno-fmt-ignore
  assert.deepEqual(out.ids, [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338]);
});

Deno.test("an adapter made for another model exits 1 naming its weights file and the shapes", async () => {
  const lora: LoraConfig = { rank: 2, alpha: 4, rslora: false, targets: ["q_proj"], layers: [0] };
  const dir = join(tmp, "for-tiny");
  await writeAdapter(dir, lora, initLora(await readConfig(TINY), lora, 0)); // D 32; stories260K has D 64
  const r = await flexora(...GREEDY, "--adapter", dir);
  assert.equal(r.code, 1, r.err);
  assert.equal(r.out, "");
  assert.ok(r.err.includes(join(dir, "adapter_model.safetensors")), r.err);
  assert.match(r.err, /has shape \[2,32\], the model needs \[2,64\] for rank 2/);
});

Deno.test("an --adapter folder that does not exist exits 1 and names it", async () => {
  const dir = join(tmp, "missing");
  const r = await flexora(...GREEDY, "--adapter", dir);
  assert.equal(r.code, 1, r.err);
  assert.ok(r.err.includes(join(dir, "adapter_config.json")), r.err);
});

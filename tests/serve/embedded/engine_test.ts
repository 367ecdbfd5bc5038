/**
 * The pieces under the routes: the run queue, the session pool (sharing, pruning) and the engine's cancellation.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generate } from "../../../src/model/generate.ts";
import { buildStepGraph } from "../../../src/model/graphs.ts";
import type { LoraConfig } from "../../../src/model/lora.ts";
import { loadModel } from "../../../src/model/model.ts";
import { readAdapter } from "../../../src/model/peft.ts";
import { Engine, type Sampling } from "../../../src/serve/embedded/engine.ts";
import { SerialQueue } from "../../../src/serve/embedded/queue.ts";
import { AdapterRegistry } from "../../../src/serve/embedded/registry.ts";
import { BASE_KEY, configKey, SessionPool } from "../../../src/serve/embedded/sessions.ts";
import { tempDir, TINY, writeTestAdapter } from "./helpers.ts";

const model = await loadModel(TINY);
const tmp = await tempDir("engine");

Deno.test("queue: tasks run one at a time in order, and a failure does not block the next", async () => {
  const queue = new SerialQueue();
  const log: string[] = [];
  let running = 0;
  const task = (name: string, fail = false) =>
    queue.run(async () => {
      assert.equal(running++, 0, "never two at once");
      log.push(`start ${name}`);
      await new Promise((r) => setTimeout(r, 2));
      log.push(`end ${name}`);
      running--;
      if (fail) throw new Error(name);
      return name;
    });
  const results = await Promise.allSettled([task("a"), task("b", true), task("c")]);
  assert.deepEqual(log, ["start a", "end a", "start b", "end b", "start c", "end c"]);
  assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.equal(queue.pending, 0);
});

Deno.test("pool: one session per configuration; alpha and rsLoRA do not split them; unwanted ones are released", async () => {
  const wanted = new Set<string>();
  const pool = new SessionPool(model, (key) => wanted.has(key));
  const lora: LoraConfig = { rank: 2, alpha: 4, rslora: false, targets: ["q_proj"], layers: [1] };
  const [a, b] = await Promise.all([pool.acquire(lora), pool.acquire({ ...lora, alpha: 7, rslora: true })]);
  assert.equal(a.session, b.session, "same shapes, one session");
  const base = await pool.acquire(null);
  assert.notEqual(base.session, a.session);
  assert.deepEqual(pool.keys.sort(), [BASE_KEY, configKey(lora)].sort());
  a.release();
  a.release(); // idempotent
  assert.equal(pool.keys.length, 2, "b still holds it");
  b.release();
  base.release();
  assert.deepEqual(
    pool.keys,
    [BASE_KEY],
    "the base stays; an unwanted adapter session goes with its last lease",
  );
  wanted.add(configKey(lora));
  (await pool.acquire(lora)).release();
  assert.equal(pool.keys.length, 2, "a wanted one stays after its last lease");
  wanted.clear();
  pool.prune();
  assert.deepEqual(pool.keys, [BASE_KEY]);
  await pool.close();
  assert.deepEqual(pool.keys, []);
});

const greedy: Sampling = {
  maxTokens: 30,
  temperature: 0,
  topP: 1,
  seed: 0,
  stop: [],
  stopTokenIds: [],
  ignoreEos: true,
  logprobs: null,
};

Deno.test("engine: ids equal the model's generate; an aborted request stops at the next step", async () => {
  const pool = new SessionPool(model, () => false);
  const engine = new Engine(model, pool, new SerialQueue());
  const prompt = [1, 8, 5, 6];
  const whole = await engine.generate({ prompt, adapter: null, sampling: greedy });
  const step = await model.session(buildStepGraph(model.config, model.weights));
  assert.deepEqual(whole.ids, await generate(step, model.config, prompt, { maxTokens: 30 }));
  const controller = new AbortController();
  const seen: number[] = [];
  const run = engine.generate({ prompt, adapter: null, sampling: greedy, signal: controller.signal }, (e) => {
    seen.push(e.id);
    if (seen.length === 3) controller.abort(new Error("client left"));
  });
  await assert.rejects(run, /client left/);
  assert.deepEqual(seen, whole.ids.slice(0, 3));
  await engine.close();
  await assert.rejects(engine.generate({ prompt, adapter: null, sampling: greedy }), /shutting down/);
});

Deno.test("registry: adapters are frozen, lora_B carries the scale, replaced entries keep their place", async () => {
  const dir = join(tmp, "scaled");
  const config = await writeTestAdapter(dir, model.config, { rank: 4, alpha: 12, layers: [1] });
  const registry = new AdapterRegistry(model.config, { maxLoraRank: 8 });
  const adapter = await registry.read("s", dir);
  assert.ok(Object.isFrozen(adapter) && Object.isFrozen(adapter.inputs));
  assert.equal(adapter.key, configKey(config));
  const raw = await readAdapter(dir, model.config);
  const b = "model.layers.1.self_attn.q_proj.lora_B.weight",
    a = "model.layers.1.self_attn.q_proj.lora_A.weight";
  assert.deepEqual(adapter.inputs[a].data, raw.params[a].data);
  assert.deepEqual(
    [...adapter.inputs[b].data],
    [...raw.params[b].data as Float32Array].map((x) => Math.fround(x * 3)),
  );
  registry.add(adapter, false);
  registry.add(await registry.read("t", dir), false);
  assert.throws(() => registry.add(adapter, false), /already been loaded/);
  const swapped = await registry.read("s", dir);
  assert.equal(registry.add(swapped, true), adapter, "returns what it replaced");
  assert.deepEqual(registry.list().map((x) => x.name), ["s", "t"]);
  assert.equal(registry.get("s"), swapped);
  assert.ok(registry.usesKey(adapter.key));
  registry.remove("s");
  registry.remove("t");
  assert.ok(!registry.usesKey(adapter.key));
});

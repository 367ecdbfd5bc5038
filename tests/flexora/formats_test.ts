/**
 * The file formats flexora owns, each through its one module: written by the writer, read back equal by the
 * reader, and a damaged file rejected with the file and the field named.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  loadCheckpoint,
  readCheckpointMeta,
  readRunManifest,
  saveCheckpoint,
  writeRunManifest,
} from "../../src/flexora/checkpoint.ts";
import { exportPeft } from "../../src/flexora/export.ts";
import { FLEXORA_FILE, readFlexoraJson, REPORT_VERSION } from "../../src/flexora/flexora_json.ts";
import { initLora, validateLora } from "../../src/model/lora.ts";
import { loadModel } from "../../src/model/model.ts";
import {
  ADAPTER_CONFIG_FILE,
  adapterConfigJson,
  AdapterError,
  readAdapterConfig,
  readAdapterWeights,
  writeAdapter,
} from "../../src/model/peft.ts";
import { hostTensor } from "../../src/runtime/session.ts";
import { SqliteStore } from "../../src/serve/store/mod.ts";
import { ROOT } from "../model/shared.ts";

const tmp = await Deno.makeTempDir({ prefix: "flexora-formats-" });
addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
const model = await loadModel(join(ROOT, "fixtures/tiny-llama"));
const lora = validateLora(model.config, {
  rank: 2,
  alpha: 4,
  rslora: true,
  targets: ["q_proj"],
  layers: [0, 2],
});
let n = 0;
const fresh = () => join(tmp, `f${n++}`);

/** Rewrites the JSON file `file` with `edit` applied. */
async function edit(file: string, change: (json: Record<string, unknown>) => void): Promise<void> {
  const json = JSON.parse(await Deno.readTextFile(file));
  change(json);
  await Deno.writeTextFile(file, JSON.stringify(json));
}

Deno.test("adapter_config.json: what the writer writes the reader gives back; a bad field is named", async () => {
  const dir = fresh();
  await writeAdapter(dir, lora, initLora(model.config, lora, 0), {
    baseModel: "m",
    layersToTransform: [0, 2],
  });
  const read = await readAdapterConfig(dir);
  assert.deepEqual(read, adapterConfigJson(lora, { baseModel: "m", layersToTransform: [0, 2] }));
  assert.deepEqual(read.layers_to_transform, [0, 2]);
  const weights = await readAdapterWeights(dir);
  assert.deepEqual([...weights.modules].map(([l, m]) => [l, [...m]]), [[0, ["q_proj"]], [2, ["q_proj"]]]);

  const file = join(dir, ADAPTER_CONFIG_FILE);
  for (
    const [change, problem] of [
      [(j: Record<string, unknown>) => (j.r = "8"), /'r' must be a positive integer, got "8"/],
      [
        (j: Record<string, unknown>) => (j.use_rslora = "yes"),
        /'use_rslora' must be true or false, got "yes"/,
      ],
      [(j: Record<string, unknown>) => (j.lora_alpha = null), /'lora_alpha' must be a number, got null/],
    ] as const
  ) {
    const copy = fresh();
    await Deno.mkdir(copy);
    await Deno.copyFile(file, join(copy, ADAPTER_CONFIG_FILE));
    await edit(join(copy, ADAPTER_CONFIG_FILE), change);
    await assert.rejects(readAdapterConfig(copy), (e) => {
      assert.ok(e instanceof AdapterError);
      assert.ok(e.message.startsWith(`${join(copy, ADAPTER_CONFIG_FILE)}: `), e.message);
      assert.match(e.message, problem);
      return true;
    });
  }
});

Deno.test("flexora.json: exportPeft writes it, readFlexoraJson reads it back; a bad field is named", async () => {
  const dir = fresh();
  const history = [{ step: 1, logits: [0.1, -0.1, 0], gates: [1.1, 0.9, 1], trainLoss: 2.5, valLoss: NaN }];
  const epochs = [{ epoch: 1, trainLoss: 2, test: { loss: 1.5, accuracy: 0.5, n: 4 } }];
  const report = {
    method: "flexora",
    gates: { logits: [0.1, -0.1, 0], values: [1.1, 0.9, 1] },
    selectedLayers: [0, 2],
    ranking: [0, 2, 1],
    selectionRule: "positive",
    metrics: {
      search: { steps: 1, seconds: 0.5, history },
      retrain: { steps: 2, seconds: 1, epochs, stoppedEarly: false },
      trainableParams: 256,
    },
    options: { rank: 2 },
    seed: 7,
    dataHash: "abc",
  };
  await exportPeft(dir, model, { config: lora, params: initLora(model.config, lora, 0) }, report);
  const read = await readFlexoraJson(dir);
  assert.equal(read.format_version, REPORT_VERSION);
  assert.deepEqual(read.lora, { rank: 2, alpha: 4, rslora: true });
  assert.equal(read.model.path, model.dir);
  const { format_version: _, tool: __, model: ___, padded: ____, lora: _____, ...rest } = read;
  // JSON writes NaN as null; the reader gives NaN back.
  assert.deepEqual(rest, report);

  await edit(
    join(dir, FLEXORA_FILE),
    (j) => ((j.metrics as { search: { history: { step: unknown }[] } }).search.history[0].step = 1.5),
  );
  await assert.rejects(
    readFlexoraJson(dir),
    /flexora\.json: 'metrics\.search\.history\.0\.step' must be an integer, got 1\.5/,
  );
  await edit(join(dir, FLEXORA_FILE), (j) => (j.format_version = 9));
  await assert.rejects(
    readFlexoraJson(dir),
    /'format_version' must be 1, the format this flexora reads, got 9/,
  );
});

Deno.test("checkpoint.json: saved and loaded back exactly; a bad field is named", async () => {
  const dir = fresh();
  const record = { epochs: [{ epoch: 1, trainLoss: 2.25 }], epochLosses: [1.5, 1.25] };
  const tensors = { w: hostTensor("float32", [2], [0.5, -1]) };
  await saveCheckpoint(dir, { stage: "retrain", step: 3, totalSteps: 8, record }, tensors);
  const { meta, tensors: back } = await loadCheckpoint(dir);
  assert.deepEqual(meta, { version: 1, stage: "retrain", step: 3, totalSteps: 8, record });
  assert.deepEqual(back.w.data, tensors.w.data);

  const file = join(dir, "checkpoint.json");
  await edit(file, (j) => ((j.record as { epochLosses: unknown[] }).epochLosses[1] = "x"));
  await assert.rejects(readCheckpointMeta(dir), (e) => {
    assert.match(
      (e as Error).message,
      new RegExp(`^${file}: 'record\\.epochLosses\\.1' must be a number, got "x"`),
    );
    return true;
  });
  await edit(file, (j) => (j.stage = "warmup"));
  await assert.rejects(readCheckpointMeta(dir), /'stage' must be "search" or "retrain", got "warmup"/);
});

Deno.test("desired rows: a damaged row is an error naming the file, the row and the column", async () => {
  const file = join(fresh() + ".sqlite");
  const first = new SqliteStore(file), store = first.desired;
  const row = {
    server: "vllm",
    name: "sql",
    adapter: "sql",
    version: "job-1",
    path: "/a/sql/job-1",
    rank: 8,
  };
  await store.attach(row);
  const { updatedAt: _, state, ...back } = await store.get("vllm", "sql") as typeof row & {
    updatedAt: string;
    state: string;
  };
  assert.deepEqual([state, back], ["attached", row]);
  await first.close();
  const { DatabaseSync } = await import("node:sqlite");
  const db = new DatabaseSync(file);
  db.prepare("UPDATE desired SET rank = 0").run();
  db.close();
  const reopened = new SqliteStore(file);
  await assert.rejects(
    () => reopened.desired.list(),
    new RegExp(
      `^Error: ${file}: table 'desired', row \\("vllm", "sql"\\): 'rank' must be a positive integer, got 0`,
    ),
  );
  await reopened.close();
});

Deno.test("run.json: written and read back; none is null; a damaged one names the field", async () => {
  const dir = fresh();
  await Deno.mkdir(dir);
  assert.equal(await readRunManifest(dir), null);
  const run = { args: { model: "m", rank: "4", rslora: true }, options: { seed: 0 } };
  await writeRunManifest(dir, run);
  assert.deepEqual(await readRunManifest(dir), run);
  await Deno.writeTextFile(join(dir, "run.json"), JSON.stringify({ args: ["m"], options: {} }));
  await assert.rejects(
    readRunManifest(dir),
    /run\.json: 'args' must be an object of the command's flag values/,
  );
});

/**
 * The Flexora pipeline with dtype float16 on the project's fixtures: search, selection, retraining with
 * gradient accumulation, and export run with mixed precision and dynamic loss scaling; the run warns that the
 * CPU emulates float16; a stopped float16 run resumes exactly (the loss scale is part of the checkpoint).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../src/data/dataset.ts";
import { loadCheckpoint } from "../../src/flexora/checkpoint.ts";
import { OptionsError } from "../../src/flexora/options.ts";
import { finetune, type FinetuneHooks } from "../../src/flexora/pipeline.ts";
import { StoppedError } from "../../src/flexora/progress.ts";
import { buildScoringGraph } from "../../src/model/graphs.ts";
import { loadModel } from "../../src/model/model.ts";
import { readAdapter } from "../../src/model/peft.ts";
import { Scorer } from "../../src/flexora/score.ts";
import { LOSS_SCALER_STATE } from "../../src/train/loss_scale.ts";
import { ROOT } from "../model/shared.ts";

const TINY = join(ROOT, "fixtures/tiny-llama");
const data = await loadDataset(join(ROOT, "fixtures/tiny-data"));
const ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
const HALF = {
  search: { loraLr: 1e-2, gateLr: 0.05, epochs: 1, lora: { targets: [...ALL] } },
  retrain: { lr: 1e-2, epochs: 2, microBatchSize: 4, lora: { targets: [...ALL] } },
  maxLength: 64,
  checkpointEvery: 0,
  dtype: "float16" as const,
};
const tmp = await Deno.makeTempDir({ prefix: "flexora-f16-pipeline-" });
addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

Deno.test("finetune with dtype float16 runs the whole pipeline, warns about the CPU, and records the dtype", async () => {
  const out = join(tmp, "adapter");
  const warnings: string[] = [];
  const r = await finetune(TINY, data, HALF, { out, onWarning: (w) => warnings.push(w) });
  assert.ok(warnings.some((w) => /float16 on the CPU is emulated/.test(w)), `warnings: ${warnings}`);
  assert.equal(r.options.dtype, "float16");
  assert.ok(r.layers.length > 0);
  // A step whose scaled gradients overflowed is dropped (the scaler halves its scale): its gate loss, taken at
  // the update it did not keep, is not finite and the record says so; every other step's losses are.
  assert.ok(
    r.search!.history.every((h) => Number.isFinite(h.trainLoss) && (h.skipped || Number.isFinite(h.valLoss))),
  );
  assert.ok(r.search!.history.some((h) => !h.skipped));
  assert.ok(
    r.search!.logits.some((v) => Math.abs(v) > 1e-3),
    `gate logits did not move: ${r.search!.logits}`,
  );
  const [first, last] = [r.retrain.epochs[0], r.retrain.epochs.at(-1)!];
  assert.ok(last.trainLoss < first.trainLoss, `train loss ${first.trainLoss} → ${last.trainLoss}`);
  const report = JSON.parse(await Deno.readTextFile(join(out, "flexora.json")));
  assert.equal(report.options.dtype, "float16");
  // The adapter scores, in a float16 model, as the run reported.
  const model = await loadModel(TINY, { dtype: "float16" });
  const adapter = await readAdapter(out, model.config);
  const session = await model.session(
    buildScoringGraph(model.config, model.weights, { config: adapter.config }),
  );
  const { nll } = await new Scorer(session, model.tokenizer, { adapterInputs: adapter.params }).completions(
    data.test!,
  );
  await session.release();
  assert.ok(Math.abs(nll - last.test!.loss) < 1e-6, `${nll} vs ${last.test!.loss}`);
});

Deno.test("a float16 run stopped and resumed ends exactly where an uninterrupted one ends", async () => {
  // All-layer LoRA: retraining alone, with gradient accumulation, stopped after its checkpoint at step 2.
  const settings = {
    ...HALF,
    method: "lora" as const,
    checkpointEvery: 2,
    retrain: { ...HALF.retrain, epochs: 1 },
  };
  const whole = await finetune(TINY, data, settings);
  const checkpointDir = join(tmp, "resume-ckpt");
  const controller = new AbortController();
  const hooks: FinetuneHooks = {
    checkpointDir,
    signal: controller.signal,
    onProgress: (e) => e.stage === "retrain" && e.step === 3 && controller.abort(),
  };
  await assert.rejects(
    finetune(TINY, data, settings, hooks),
    (e) => e instanceof StoppedError && /retrain stopped at step 3/.test(e.message),
  );
  // The loss scaler's state [scale, finite steps since it changed, skipped steps] is in the checkpoint.
  const saved = (await loadCheckpoint(join(checkpointDir, "retrain"))).tensors[LOSS_SCALER_STATE];
  const [scale, run, skipped] = saved.data as Float32Array;
  assert.ok(scale > 0 && run + skipped === 3, `loss scaler state ${saved.data}`);
  const resumed = await finetune(TINY, data, settings, { checkpointDir, resume: true });
  for (const [name, t] of Object.entries(whole.retrain.params)) {
    assert.deepEqual(resumed.retrain.params[name].data, t.data, name);
  }
  assert.deepEqual(resumed.retrain.epochs, whole.retrain.epochs);
});

Deno.test("finetune refuses a dtype other than the one its model was loaded in", async () => {
  const model = await loadModel(TINY);
  await assert.rejects(
    finetune(model, data, HALF),
    (e) =>
      e instanceof OptionsError &&
      /'dtype' is float16, but the model was loaded in float32/.test(e.message),
  );
});

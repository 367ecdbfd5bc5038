/**
 * The pipeline's stages run one by one, as a library caller may run them, give what finetune() gives: the same
 * layers, the same adapter weights to the bit, the same record.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../src/data/dataset.ts";
import { readFlexoraJson } from "../../src/flexora/flexora_json.ts";
import { finetune } from "../../src/flexora/pipeline.ts";
import {
  chooseStage,
  evaluateStage,
  exportStage,
  loadStage,
  prepareStage,
  retrainStage,
  searchStage,
  selectStage,
} from "../../src/flexora/stages.ts";
import { loadModel } from "../../src/model/model.ts";
import { ROOT } from "../model/shared.ts";

const model = await loadModel(join(ROOT, "fixtures/tiny-llama"));
const data = await loadDataset(join(ROOT, "fixtures/tiny-data"));
const QUICK = {
  search: { loraLr: 1e-2, gateLr: 0.05, epochs: 1 },
  retrain: { lr: 1e-2, epochs: 1 },
  maxLength: 64,
  checkpointEvery: 0,
};
const tmp = await Deno.makeTempDir({ prefix: "flexora-stages-" });
addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

Deno.test("load → prepare → search → select → retrain → evaluate → export equals finetune()", async () => {
  const warnings: string[] = [];
  const hooks = { out: join(tmp, "staged"), onWarning: (w: string) => warnings.push(w) };
  const loaded = await loadStage(model, QUICK, hooks);
  const prepared = await prepareStage(loaded, data, hooks);
  const searched = await searchStage(loaded, prepared, hooks);
  const selected = selectStage(loaded, searched, hooks);
  const retrained = await retrainStage(loaded, prepared, selected, hooks);
  const evaluation = evaluateStage(searched, retrained);
  const dir = await exportStage(loaded, { prepared, searched, selected, retrained, evaluation }, hooks);
  assert.equal(dir, hooks.out);

  const whole = await finetune(model, data, QUICK, { out: join(tmp, "whole") });
  assert.deepEqual(selected.layers, whole.layers);
  assert.deepEqual(searched?.logits, whole.search?.logits);
  assert.equal(evaluation.trainableParams, whole.trainableParams);
  assert.deepEqual(Object.keys(retrained.params), Object.keys(whole.retrain.params));
  for (const [name, t] of Object.entries(retrained.params)) {
    assert.deepEqual(t.data, whole.retrain.params[name].data, name);
  }
  const [a, b] = [await readFlexoraJson(hooks.out), await readFlexoraJson(join(tmp, "whole"))];
  assert.deepEqual(a.selectedLayers, b.selectedLayers);
  assert.deepEqual(a.gates, b.gates);
  assert.deepEqual(a.metrics.retrain?.epochs, b.metrics.retrain?.epochs);
  assert.deepEqual(a.options, b.options);
});

Deno.test("the baselines select without a search: lora every layer, random-k K seeded layers", async () => {
  const lora = await loadStage(model, { ...QUICK, method: "lora" });
  assert.equal(await searchStage(lora, await prepareStage(lora, data)), undefined);
  assert.deepEqual(selectStage(lora, undefined).layers, [0, 1, 2]);
  const rk = await loadStage(model, { ...QUICK, method: "random-k", select: "top-k:2" });
  const layers = selectStage(rk, undefined).layers;
  assert.equal(layers.length, 2);
  assert.deepEqual(selectStage(rk, undefined).layers, layers, "seeded");
  const flexora = await loadStage(model, QUICK);
  assert.throws(() => selectStage(flexora, undefined), /method flexora needs the gate search's result/);
});

Deno.test("select validation:K retrains the gate-ranked top 1..K layers and keeps the lowest validation loss", async () => {
  const loaded = await loadStage(model, { ...QUICK, select: "validation:3" });
  const prepared = await prepareStage(loaded, data);
  const selected = selectStage(loaded, await searchStage(loaded, prepared));
  const { ranking, candidates } = selected.selection!;
  assert.deepEqual(candidates, [1, 2, 3].map((k) => ranking.slice(0, k).sort((a, b) => a - b)));
  const losses: number[] = [];
  for (const layers of candidates!) {
    const r = await retrainStage(loaded, prepared, { layers });
    losses.push(r.epochs.at(-1)!.validation!.loss);
  }
  assert.equal(new Set(losses).size, 3, `the candidates must differ to test the choice, got ${losses}`);
  const chosen = await chooseStage(loaded, prepared, selected);
  assert.deepEqual(chosen.layers, candidates![losses.indexOf(Math.min(...losses))]);
  assert.deepEqual(chosen.selection?.layers, chosen.layers);
  // The other rules pass through.
  const positive = selectStage(await loadStage(model, QUICK), await searchStage(loaded, prepared));
  assert.equal(await chooseStage(loaded, prepared, positive), positive);
});

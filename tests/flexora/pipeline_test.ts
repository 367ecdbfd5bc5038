/**
 * The Flexora pipeline end to end on the project's fixtures: export format, the exported adapter scoring as the
 * in-memory one, stop + resume equal to an uninterrupted run, divergence, and the baselines.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../src/data/dataset.ts";
import { resolveOptions } from "../../src/flexora/options.ts";
import { finetune, type FinetuneHooks, randomLayers } from "../../src/flexora/pipeline.ts";
import {
  DivergedError,
  type ProgressEvent,
  type StageStart,
  StoppedError,
} from "../../src/flexora/progress.ts";
import { buildScoringGraph } from "../../src/model/graphs.ts";
import { loadModel } from "../../src/model/model.ts";
import { readAdapter } from "../../src/model/peft.ts";
import { readHeader } from "../../src/model/safetensors.ts";
import { Scorer } from "../../src/flexora/score.ts";
import { ROOT } from "../model/shared.ts";

const model = await loadModel(join(ROOT, "fixtures/tiny-llama"));
const data = await loadDataset(join(ROOT, "fixtures/tiny-data"));
const ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
/** Small, quick settings that still move the gates. */
const QUICK = {
  search: { loraLr: 1e-2, gateLr: 0.05, epochs: 1, lora: { targets: [...ALL] } },
  retrain: { lr: 1e-2, epochs: 2, lora: { targets: [...ALL] } },
  maxLength: 64,
  checkpointEvery: 0,
};
const tmp = await Deno.makeTempDir({ prefix: "flexora-pipeline-" });
addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

Deno.test("finetune writes a PEFT adapter of the selected layers, with flexora.json beside it", async () => {
  const out = join(tmp, "adapter");
  const events: ProgressEvent[] = [];
  const r = await finetune(model, data, QUICK, { out, onProgress: (e) => events.push(e) });
  const config = JSON.parse(await Deno.readTextFile(join(out, "adapter_config.json")));
  assert.equal(config.peft_type, "LORA");
  assert.equal(config.task_type, "CAUSAL_LM");
  assert.equal(config.bias, "none");
  assert.equal(config.r, 8);
  assert.equal(config.lora_alpha, 16);
  assert.equal(config.use_rslora, false);
  assert.deepEqual(config.target_modules, [...ALL]);
  assert.deepEqual(config.layers_to_transform, r.layers);
  assert.equal(config.layers_pattern, "layers");
  assert.equal(config.base_model_name_or_path, model.dir);
  assert.equal(config.rank_pattern, undefined);
  assert.equal(config.alpha_pattern, undefined);
  const keys = (await readHeader(join(out, "adapter_model.safetensors"))).tensors.map((t) => t.name);
  assert.equal(keys.length, r.layers.length * ALL.length * 2);
  for (const k of keys) {
    const layer = Number(/layers\.(\d+)\./.exec(k)![1]);
    assert.ok(r.layers.includes(layer), `${k} is not in a selected layer`);
    assert.match(k, /^base_model\.model\.model\.layers\.\d+\.(self_attn|mlp)\.[a-z_]+\.lora_[AB]\.weight$/);
  }
  const report = JSON.parse(await Deno.readTextFile(join(out, "flexora.json")));
  assert.equal(report.format_version, 1);
  assert.equal(report.tool.name, "flexora");
  assert.deepEqual(report.selectedLayers, r.layers);
  assert.equal(report.gates.logits.length, 3);
  assert.equal(report.selectionRule, "positive");
  assert.equal(report.seed, 0);
  assert.match(report.dataHash, /^[0-9a-f]{64}$/);
  assert.match(report.model.hash, /^[0-9a-f]{64}$/);
  assert.equal(report.metrics.search.history.length, r.search!.steps);
  assert.deepEqual(report.options, resolveOptions(QUICK));
  // Progress: every stage ends at its total, and the gates were reported during the search.
  const search = events.filter((e) => e.stage === "search");
  assert.equal(search.at(-1)!.step, search.at(-1)!.total);
  assert.ok(search.every((e) => e.gates?.length === 3));
  const evaluations = events.filter((e) => e.stage === "evaluate");
  assert.equal(evaluations.length, 2);
  // Each epoch's validation loss is reported live, equal to the one the report keeps.
  assert.deepEqual(
    evaluations.map((e) => e.valLoss),
    r.retrain.epochs.map((e) => e.validation!.loss),
  );
});

Deno.test("the exported adapter, read back from disk, scores as the in-memory one did", async () => {
  const out = join(tmp, "roundtrip");
  const r = await finetune(model, data, QUICK, { out });
  const adapter = await readAdapter(out, model.config);
  assert.deepEqual(adapter.config.layers, r.layers);
  const session = await model.session(
    buildScoringGraph(model.config, model.weights, { config: adapter.config }),
  );
  const scorer = new Scorer(session, model.tokenizer, { adapterInputs: adapter.params });
  const mc = await scorer.multipleChoice(
    data.test!.map((e) => ({ prompt: e.prompt, choices: e.choices!, label: e.label })),
  );
  const nll = (await scorer.completions(data.test!)).nll;
  const last = r.retrain.epochs.at(-1)!.test!;
  assert.equal(mc.accuracy, last.accuracy);
  assert.ok(Math.abs(nll - last.loss) < 1e-6, `${nll} vs ${last.loss}`);
  await session.release();
});

Deno.test("--pad-layers writes zero A and B for the layers that were not selected", async () => {
  const out = join(tmp, "padded");
  const r = await finetune(model, data, { ...QUICK, method: "random-k", select: "top-k:1" }, {
    out,
    padLayers: true,
  });
  const adapter = await readAdapter(out, model.config);
  assert.deepEqual(adapter.config.layers, [0, 1, 2]);
  for (const [name, t] of Object.entries(adapter.params)) {
    const layer = Number(/layers\.(\d+)\./.exec(name)![1]);
    const zero = (t.data as Float32Array).every((v) => v === 0);
    assert.equal(zero, !r.layers.includes(layer), `${name}: zero ${zero}, selected layers ${r.layers}`);
  }
  assert.deepEqual(
    JSON.parse(await Deno.readTextFile(join(out, "adapter_config.json"))).layers_to_transform,
    r.layers,
  );
});

Deno.test("a run stopped through its signal and resumed ends exactly where an uninterrupted run ends", async () => {
  const settings = { ...QUICK, checkpointEvery: 3 };
  const whole = await finetune(model, data, settings);
  const checkpointDir = join(tmp, "resume-ckpt");
  const controller = new AbortController();
  let seen = 0;
  const hooks: FinetuneHooks = {
    checkpointDir,
    signal: controller.signal,
    onProgress: (e) => {
      if (e.stage === "retrain" && ++seen === 5) controller.abort();
    },
  };
  await assert.rejects(
    finetune(model, data, settings, hooks),
    (e) => e instanceof StoppedError && /retrain stopped at step 5/.test(e.message),
  );
  const starts: StageStart[] = [];
  const resumed = await finetune(model, data, settings, {
    checkpointDir,
    resume: true,
    onStart: (s) => starts.push(s),
  });
  // Each stage says where it starts from and how long it ran before; the timings add the segments up.
  const search = starts.find((s) => s.stage === "search")!,
    retrained = starts.find((s) => s.stage === "retrain")!;
  assert.equal(search.step, search.total);
  assert.equal(retrained.step, 5);
  assert.ok(search.seconds > 0 && retrained.seconds > 0);
  assert.ok(
    Math.abs(resumed.timings.search - search.seconds) < 0.5,
    `${resumed.timings.search} vs ${search.seconds}`,
  );
  assert.ok(resumed.timings.retrain > retrained.seconds);
  assert.deepEqual(resumed.layers, whole.layers);
  assert.deepEqual(resumed.search!.logits, whole.search!.logits);
  for (const [name, t] of Object.entries(whole.retrain.params)) {
    assert.deepEqual(
      Array.from(resumed.retrain.params[name].data as Float32Array),
      Array.from(t.data as Float32Array),
      name,
    );
  }
  assert.deepEqual(resumed.retrain.epochs, whole.retrain.epochs);
});

Deno.test("a diverging loss stops the run, names the step, and keeps the last good state", async () => {
  const checkpointDir = join(tmp, "diverge-ckpt");
  await assert.rejects(
    finetune(model, data, { ...QUICK, method: "lora", maxGradNorm: 1e30, retrain: { lr: 1e38, epochs: 2 } }, {
      checkpointDir,
    }),
    (e) =>
      e instanceof DivergedError &&
      /retrain: training diverged at step \d+: .*; the learning rate is likely too high \(retrain\.lr 1e\+38\); the last good state/
        .test(e.message),
  );
  const meta = JSON.parse(await Deno.readTextFile(join(checkpointDir, "retrain", "checkpoint.json")));
  assert.equal(meta.stage, "retrain");
});

Deno.test("a learning rate that blows the weights up stops the run in float32 too, naming the learning rate", async () => {
  // lr 1e30: the losses stay finite (every one ln(vocab), the network saturated), so only the weights tell.
  await assert.rejects(
    finetune(model, data, { ...QUICK, search: { loraLr: 1e30, gateLr: 0.05, epochs: 1 } }),
    (e) =>
      e instanceof DivergedError &&
      /^search: training diverged at step 1: .*lora_[AB]\.weight reached 1\.0e\+30.*\(search\.loraLr 1e\+30, search\.gateLr 0\.05\)$/
        .test(e.message),
  );
  await assert.rejects(
    finetune(model, data, { ...QUICK, method: "lora", retrain: { lr: 1e30, epochs: 1 } }),
    (e) =>
      e instanceof DivergedError &&
      /^retrain: training diverged at step \d+: .*\(retrain\.lr 1e\+30\)$/.test(e.message),
  );
});

Deno.test("baselines: lora trains every layer; random-k takes K seeded layers and needs top-k:K", async () => {
  const lora = await finetune(model, data, { ...QUICK, method: "lora", retrain: { epochs: 1 } });
  assert.deepEqual(lora.layers, [0, 1, 2]);
  assert.equal(lora.search, undefined);
  const rk = await finetune(model, data, {
    ...QUICK,
    method: "random-k",
    select: "top-k:2",
    retrain: { epochs: 1 },
  });
  assert.deepEqual(rk.layers, randomLayers(3, 2, 0));
  assert.equal(rk.trainableParams, (lora.trainableParams * 2) / 3);
  await assert.rejects(
    finetune(model, data, { ...QUICK, method: "random-k" }),
    /'select' must be top-k:K with method random-k/,
  );
});

Deno.test("resuming from a damaged checkpoint is an error naming the file, not a silent fresh start", async () => {
  const checkpointDir = join(tmp, "damaged-ckpt");
  await Deno.mkdir(join(checkpointDir, "search"), { recursive: true });
  await Deno.writeTextFile(join(checkpointDir, "search", "checkpoint.json"), "{ truncated");
  await assert.rejects(
    finetune(model, data, QUICK, { checkpointDir, resume: true }),
    /damaged-ckpt\/search\/checkpoint\.json: not a valid checkpoint/,
  );
});

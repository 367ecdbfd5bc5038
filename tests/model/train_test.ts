/**
 * Training and scoring on the real stories260K model and the story-object task.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { serialize } from "../../src/graph/serialize.ts";
import { liveNodes } from "../../src/graph/validate.ts";
import { batchFeeds, type Sequence } from "../../src/data/sequence.ts";
import { GATE_LOGITS } from "../../src/model/graphs.ts";
import { buildScoringGraph } from "../../src/model/graphs.ts";
import { initLora, validateLora } from "../../src/model/lora.ts";
import { loadModel } from "../../src/model/model.ts";
import { type ChoiceRow, Scorer } from "../../src/flexora/score.ts";
import { buildLoraTrainStep, buildSearchStep } from "../../src/flexora/train_graphs.ts";
import { createSession, hostTensor } from "../../src/runtime/session.ts";
import { adamw } from "../../src/train/optim.ts";
import { TrainLoop } from "../../src/train/step.ts";
import { DATA, STORIES } from "./shared.ts";

interface Row extends ChoiceRow {
  completion: string;
}

const model = await loadModel(STORIES);
const external = await model.weights.sessionData();
const rows = async (split: string, n: number): Promise<Row[]> =>
  (await Deno.readTextFile(join(DATA, "story-object", `${split}.jsonl`))).trim().split("\n").slice(0, n).map((
    l,
  ) => JSON.parse(l));
const sequence = (r: Row): Sequence => ({
  ids: model.tokenizer.encode(r.prompt + r.completion),
  targetFrom: model.tokenizer.encode(r.prompt).length,
});
const lora = validateLora(model.config, {
  rank: 8,
  alpha: 16,
  rslora: false,
  targets: ["q_proj", "v_proj"],
  layers: [0, 1, 2, 3, 4],
});

Deno.test("stories260K: base zero-shot accuracy on 200 story-object test rows is near the reference 0.67", async () => {
  const session = await model.session(buildScoringGraph(model.config, model.weights));
  const { accuracy, n } = await new Scorer(session, model.tokenizer).multipleChoice(await rows("test", 200));
  assert.equal(n, 200);
  assert.ok(Math.abs(accuracy - 0.67) <= 0.02, `accuracy ${accuracy}`);
});

Deno.test("stories260K: 30 LoRA steps on story-object lower the training loss", async () => {
  const { graph, step } = buildLoraTrainStep(
    model.config,
    model.weights,
    { config: lora },
    adamw({ weightDecay: 0 }),
  );
  const session = await createSession(serialize(graph, step.outputs), external);
  const train = (await rows("train", 64)).map(sequence);
  const batches = [0, 1, 2, 3].map((i) => batchFeeds(train.slice(i * 16, i * 16 + 16)));
  const loop = new TrainLoop(session, step, initLora(model.config, lora, 0));
  const losses: number[] = [];
  for (let s = 0; s < 30; s++) losses.push((await loop.step(batches[s % 4], 2e-3)).loss);
  const first = losses.slice(0, 4).reduce((a, b) => a + b) / 4,
    last = losses.slice(-4).reduce((a, b) => a + b) / 4;
  assert.ok(losses.every(Number.isFinite));
  assert.ok(last < first * 0.8, `mean loss over the first 4 steps ${first}, over the last 4 ${last}`);
});

Deno.test("stories260K: a Flexora search step updates LoRA on train and the gates on validation in one session", async () => {
  const { graph, step } = buildSearchStep(model.config, model.weights, lora, {
    lora: adamw({ weightDecay: 0 }),
    gates: adamw({ weightDecay: 0 }),
  });
  const session = await createSession(serialize(graph, step.outputs), external);
  assert.deepEqual(step.groups.map((g) => g.name), ["lora", "gates"]);
  const train = (await rows("train", 32)).map(sequence), val = (await rows("validation", 16)).map(sequence);
  const initial = { ...initLora(model.config, lora, 1), [GATE_LOGITS]: hostTensor("float32", [5]) };
  const loop = new TrainLoop(session, step, initial);
  const first = await loop.step({
    ...batchFeeds(train.slice(0, 16)),
    ...batchFeeds(val.slice(0, 8), 0, "val/"),
  }, {
    lora: 2e-3,
    gates: 0.05,
  });
  // The first step runs at gates 1 (logits 0), as plain LoRA.
  assert.deepEqual(Array.from(first.outputs.gates.data as Float32Array), [1, 1, 1, 1, 1]);
  for (let s = 1; s < 6; s++) {
    const b = s % 2;
    await loop.step({
      ...batchFeeds(train.slice(b * 16, b * 16 + 16)),
      ...batchFeeds(val.slice(b * 8, b * 8 + 8), 0, "val/"),
    }, {
      lora: 2e-3,
      gates: 0.05,
    });
  }
  const logits = Array.from((await loop.params())[GATE_LOGITS].data as Float32Array);
  assert.ok(logits.some((v) => Math.abs(v) > 1e-3), `gate logits did not move: ${logits}`);
  assert.ok(
    Math.abs(logits.reduce((a, b) => a + b)) < 1,
    "gates are N·softmax(logits): only differences matter",
  );
  assert.ok(Number.isFinite(first.losses.gates) && Number.isFinite(first.losses.lora));
});

Deno.test("with the LM head in token blocks, no value of the train step holds logits for every token", () => {
  const V = model.config.vocabSize;
  const whole = (chunk: number) => {
    const { graph, step } = buildLoraTrainStep(model.config, model.weights, { config: lora }, adamw(), {
      vocabChunk: chunk,
    });
    const live = liveNodes(graph, Object.values(step.outputs));
    const values = live.flatMap((n) => n.outputs);
    assert.ok(values.some((v) => v.shape.includes(V)), "some value holds logits");
    return values.filter((v) => v.shape.includes(V) && v.shape.includes("B*T")); // [N, V], N = B·T
  };
  assert.ok(
    whole(V).length > 0,
    "the unchunked head must hold [N, V] logits (else this test proves nothing)",
  );
  assert.deepEqual(whole(128).map((v) => v.name), []);
});

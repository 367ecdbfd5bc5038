/**
 * The whole model's gradient with respect to LoRA A, B and the gate logits, against central finite differences
 * in float64 through onnxruntime, on the real stories260K weights; for both gate forms (g and g³).
 */

import assert from "node:assert/strict";
import { gradients } from "../../src/graph/autodiff.ts";
import { Graph, type Value } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { batchFeeds } from "../../src/data/sequence.ts";
import { readConfig } from "../../src/model/config.ts";
import { GATE_LOGITS, type GateForm, loraInputs } from "../../src/model/graphs.ts";
import { loraShapes, validateLora } from "../../src/model/lora.ts";
import { openCheckpoint } from "../../src/model/safetensors.ts";
import { batchInputs, lmLoss } from "../../src/model/lm_loss.ts";
import { WeightStore } from "../../src/model/weights.ts";
import { createSession, type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { Rng } from "../../src/util/random.ts";
import { STORIES } from "./shared.ts";

const GOLDEN = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];

for (
  const [vocabChunk, gateForm] of [[512, "linear"], [100, "linear"], [512, "cubed"]] as [number, GateForm][]
) {
  const head = vocabChunk === 512 ? "whole LM head" : "LM head in token blocks of 100 classes each";
  const label = `${head}, ${gateForm === "cubed" ? "branches scaled by g³" : "branches scaled by g"}`;
  Deno.test(`stories260K: d loss / d (LoRA A, LoRA B, gate logits) match finite differences (float64, ${label})`, () =>
    checkModelGradients(vocabChunk, gateForm));
}

async function checkModelGradients(vocabChunk: number, gateForm: GateForm) {
  const cfg = await readConfig(STORIES);
  const weights = new WeightStore(await openCheckpoint(STORIES));
  const lora = validateLora(cfg, {
    rank: 2,
    alpha: 4,
    rslora: false,
    targets: ["q_proj", "v_proj", "down_proj"],
    layers: [0, 1, 2, 3, 4],
  });
  const g = new Graph({ float: "float64" });
  const binding = loraInputs(g, cfg, { config: lora, gated: true, gateForm });
  const { loss, backward } = lmLoss(cfg, weights, batchInputs(g), binding, { vocabChunk });
  const wrt: Value[] = [...binding.params.values(), g.inputs.find((v) => v.name === GATE_LOGITS)!];
  const outputs: Record<string, Value> = { loss };
  gradients(backward.value, wrt, { seed: backward.seed }).forEach((
    d,
    i,
  ) => (outputs[`d/${wrt[i].name}`] = d));
  const session = await createSession(serialize(g, outputs), {
    ...await weights.sessionData(),
    optimization: "basic",
  });

  // Two sequences, the second shorter (right padding) with loss only from position 3.
  const rng = new Rng(5);
  const feeds: Record<string, HostTensor> = batchFeeds([{ ids: GOLDEN }, {
    ids: GOLDEN.slice(0, 9),
    targetFrom: 3,
  }]);
  for (const v of wrt) {
    const n = v.shape.reduce((a, b) => Number(a) * Number(b), 1) as number;
    feeds[v.name] = hostTensor("float64", v.shape as number[], rng.uniforms(n, -0.3, 0.3));
  }
  const analytic = await session.run(feeds);
  const lossAt = async () => (await session.run(feeds, ["loss"])).loss.data[0] as number;
  const h = 1e-5;
  let worst = 0;
  for (const v of wrt) {
    const data = feeds[v.name].data as Float64Array;
    const coords = v.name === GATE_LOGITS
      ? [...data.keys()]
      : [...Array(6)].map(() => rng.int(0, data.length - 1));
    let err = 0, scale = 0;
    for (const k of coords) {
      const x0 = data[k];
      data[k] = x0 + h;
      const up = await lossAt();
      data[k] = x0 - h;
      const down = await lossAt();
      data[k] = x0;
      const numeric = (up - down) / (2 * h);
      err = Math.max(err, Math.abs((analytic[`d/${v.name}`].data[k] as number) - numeric));
      scale = Math.max(scale, Math.abs(numeric));
    }
    assert.ok(scale > 1e-8, `${v.name}: the checked gradient entries are all zero`);
    worst = Math.max(worst, err / scale);
    assert.ok(err / scale <= 1e-6, `${v.name}: relative error ${(err / scale).toExponential(2)}`);
  }
  await session.release();
  console.log(`worst relative error ${worst.toExponential(2)} over ${wrt.length} tensors`);
}

Deno.test("stories260K: the cubed gate form is the linear form with each layer's LoRA B scaled by g²", async () => {
  const cfg = await readConfig(STORIES);
  const weights = new WeightStore(await openCheckpoint(STORIES));
  const lora = validateLora(cfg, {
    rank: 2,
    alpha: 4,
    rslora: false,
    targets: ["q_proj", "v_proj"],
    layers: [0, 1, 2, 3, 4],
  });
  const lossOf = async (gateForm: GateForm, feeds: Record<string, HostTensor>) => {
    const g = new Graph({ float: "float64" });
    const binding = loraInputs(g, cfg, { config: lora, gated: true, gateForm });
    const { loss } = lmLoss(cfg, weights, batchInputs(g), binding);
    const session = await createSession(serialize(g, { loss }), {
      ...await weights.sessionData(),
      optimization: "basic",
    });
    const out = (await session.run(feeds)).loss.data[0] as number;
    await session.release();
    return out;
  };
  const rng = new Rng(7);
  const feeds: Record<string, HostTensor> = batchFeeds([{ ids: GOLDEN }]);
  for (const [name, shape] of loraShapes(cfg, lora)) {
    feeds[name] = hostTensor("float64", shape, rng.uniforms(shape[0] * shape[1], -0.3, 0.3));
  }
  const logits = [0.9, -0.7, 0.3, -0.2, 0.5];
  feeds[GATE_LOGITS] = hostTensor("float64", [5], logits);
  const cubed = await lossOf("cubed", feeds);
  const z = logits.reduce((s, v) => s + Math.exp(v), 0);
  const gates = logits.map((v) => (5 * Math.exp(v)) / z);
  const scaled = { ...feeds };
  for (const [name, shape] of loraShapes(cfg, lora)) {
    if (!name.endsWith("lora_B.weight")) continue;
    const l = Number(name.split(".")[2]);
    scaled[name] = hostTensor(
      "float64",
      shape,
      (feeds[name].data as Float64Array).map((v) => v * gates[l] ** 2),
    );
  }
  const linear = await lossOf("linear", scaled);
  assert.ok(Math.abs(cubed - linear) < 1e-10, `cubed ${cubed} vs linear with B·g² ${linear}`);
  assert.ok(Math.abs(cubed - await lossOf("linear", feeds)) > 1e-4, "the two forms differ at unequal gates");
});

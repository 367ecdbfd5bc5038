/**
 * One train-step variant on one device, in a process of its own (so that its memory is its own): a LoRA train
 * step (r 8, α 16 on q_proj and v_proj, AdamW; float16 with loss scaling) on the seeded ~100M random Llama,
 * batch 8 × 256, with its state on the device. Prints one JSON line: tokens/s (median step), the median and
 * first step, and the process's peak resident memory. `bench/gpu.sh` runs it per variant and samples the GPU's
 * memory beside it.
 *
 * ```sh
 * deno run -A bench/gpu.ts --write-model DIR    # the seeded ~100M Llama and the fixture's tokenizer, once
 * deno run -A bench/gpu.ts --model DIR --device cuda|webgpu|cpu --dtype float32|float16 --layers all|top3 [--steps N]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { batchFeeds } from "../src/data/sequence.ts";
import { buildLoraTrainStep } from "../src/flexora/train_graphs.ts";
import { initLora } from "../src/model/lora.ts";
import { loadModel } from "../src/model/model.ts";
import { type Device, resolveDevice } from "../src/runtime/device.ts";
import { formatPlacement } from "../src/runtime/placement.ts";
import { adamw } from "../src/train/optim.ts";
import { stateOutputs, TrainLoop } from "../src/train/step.ts";
import { Rng } from "../src/util/random.ts";
import { LLAMA_100M, writeRandomLlama } from "./random_llama.ts";
import { median } from "./stats.ts";
import { benchLora } from "./train.ts";
import { peakRss } from "../src/util/memory.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    device: { type: "string", default: "cpu" },
    dtype: { type: "string", default: "float32" },
    layers: { type: "string", default: "all" },
    steps: { type: "string", default: "5" },
    "write-model": { type: "string" },
  },
});
if (values["write-model"]) {
  const dir = values["write-model"];
  await Deno.mkdir(dir, { recursive: true });
  await writeRandomLlama(dir, LLAMA_100M);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    await Deno.copyFile(new URL(`../fixtures/tiny-llama/${f}`, import.meta.url), `${dir}/${f}`);
  }
  Deno.exit(0);
}
if (!values.model) throw new Error("--model DIR is required");
if (!["float32", "float16"].includes(values.dtype)) {
  throw new Error(`--dtype: float32 or float16, got ${values.dtype}`);
}
if (!["all", "top3"].includes(values.layers)) throw new Error(`--layers: all or top3, got ${values.layers}`);
const [B, T, steps] = [8, 256, Number(values.steps)];
const { device, providers } = await resolveDevice(values.device as Device, (l) => console.error(l));
const model = await loadModel(values.model, {
  dtype: values.dtype as "float32" | "float16",
  providers,
  onPlacement: (p) => console.error(formatPlacement(p)),
});
const L = model.config.numLayers;
const layers = values.layers === "all" ? [...Array(L).keys()] : [L - 3, L - 2, L - 1];
const lora = benchLora(model.config, layers);
const { graph, step } = buildLoraTrainStep(model.config, model.weights, { config: lora }, adamw());
const session = await model.session({ graph, outputs: step.outputs }, { deviceOutputs: stateOutputs(step) });
const loop = new TrainLoop(session, step, initLora(model.config, lora, 0), 0, { initial: 2 ** 8 });
const rng = new Rng(7);
const batch = batchFeeds(Array.from({ length: B }, () => ({
  ids: Array.from({ length: T }, () => rng.int(3, 255)),
})));
const seconds: number[] = [];
let skipped = 0;
for (let i = 0; i <= steps; i++) {
  const t0 = performance.now();
  const r = await loop.step(batch, 1e-4);
  seconds.push((performance.now() - t0) / 1000);
  if (r.skipped) skipped++;
}
const [first, ...rest] = seconds;
const med = median(rest);
console.log(JSON.stringify({
  device,
  dtype: values.dtype,
  layers: values.layers,
  batch: `${B}x${T}`,
  tokensPerSecond: Math.round((B * T) / med),
  medianStepMs: Math.round(med * 1000),
  firstStepMs: Math.round(first * 1000),
  skippedSteps: skipped,
  peakRssMiB: Math.round(peakRss().bytes / 2 ** 20),
  traffic: session.traffic,
}));
await session.release();

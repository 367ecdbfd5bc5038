/**
 * float16 against float32 compute: a LoRA train step (r 8 on q_proj and v_proj of every layer, AdamW, loss
 * scaling in float16) and a forward scoring pass on a seeded random Llama, timed in interleaved rounds so that
 * load drifts on a shared machine hit both alike. Prints the medians and the float16/float32 time ratio.
 *
 * On the CPU provider float16 is emulated (onnxruntime casts to float32 around ops without float16 kernels), so
 * the ratio there measures that overhead; on a GPU provider it measures the real gain.
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-env --allow-ffi --allow-sys bench/float16.ts [--full] [--device cpu|cuda|webgpu]
 * ```
 * Default model: the ~4M `--quick` shape, batch 4 × 128 tokens; `--full`: the ~100M shape, batch 8 × 256.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { batchFeeds } from "../src/data/sequence.ts";
import { buildScoringGraph } from "../src/model/graphs.ts";
import { initLora } from "../src/model/lora.ts";
import { loadModel } from "../src/model/model.ts";
import { buildLoraTrainStep } from "../src/flexora/train_graphs.ts";
import { type Device, resolveDevice } from "../src/runtime/device.ts";
import { adamw } from "../src/train/optim.ts";
import { TrainLoop } from "../src/train/step.ts";
import { Rng } from "../src/util/random.ts";
import { LLAMA_100M, LLAMA_QUICK, writeRandomLlama } from "./random_llama.ts";
import { median } from "./stats.ts";
import { benchLora } from "./train.ts";

const { values } = parseArgs({ options: { full: { type: "boolean" }, device: { type: "string" } } });
const [shape, B, T, rounds] = values.full ? [LLAMA_100M, 8, 256, 5] : [LLAMA_QUICK, 4, 128, 9];
const { providers } = await resolveDevice((values.device ?? "cpu") as Device, (l) => console.error(l));
const dir = await Deno.makeTempDir({ prefix: "flexora-bench-f16-" });
try {
  await writeRandomLlama(dir, shape);
  await Deno.copyFile(
    new URL("../fixtures/tiny-llama/tokenizer.json", import.meta.url),
    `${dir}/tokenizer.json`,
  );
  await Deno.copyFile(
    new URL("../fixtures/tiny-llama/tokenizer_config.json", import.meta.url),
    `${dir}/tokenizer_config.json`,
  );
  const rng = new Rng(7);
  const { labels, ...feeds } = batchFeeds(Array.from({ length: B }, () => ({
    ids: Array.from({ length: T }, () => rng.int(3, 255)), // within the fixture tokenizer's vocabulary
  })));
  const runs: { name: string; run: () => Promise<unknown> }[] = [];
  for (const dtype of ["float32", "float16"] as const) {
    const model = await loadModel(dir, { dtype });
    const lora = benchLora(model.config, [...Array(model.config.numLayers).keys()]);
    const { graph, step } = buildLoraTrainStep(model.config, model.weights, { config: lora }, adamw());
    const train = new TrainLoop(
      await model.session({ graph, outputs: step.outputs }, { providers }),
      step,
      {
        ...initLora(model.config, lora, 0),
      },
      0,
      { initial: 2 ** 8 },
    );
    const score = await model.session(buildScoringGraph(model.config, model.weights), { providers });
    runs.push(
      { name: `train step ${dtype}`, run: () => train.step({ ...feeds, labels }, 1e-4) },
      { name: `forward ${dtype}`, run: () => score.run({ ...feeds, targets: labels }) },
    );
  }
  for (const r of runs) await r.run(); // warm-up
  const seconds = runs.map(() => [] as number[]);
  for (let i = 0; i < rounds; i++) {
    for (const [j, r] of runs.entries()) {
      const t0 = performance.now();
      await r.run();
      seconds[j].push((performance.now() - t0) / 1000);
    }
  }
  const med = seconds.map(median);
  console.log(`model ${values.full ? "~100M" : "~4M"}, batch ${B} × ${T} tokens, providers ${providers}`);
  runs.forEach((r, j) => console.log(`${r.name.padEnd(20)} median ${(med[j] * 1000).toFixed(1)} ms`));
  console.log(
    `float16 / float32 time: train step ${(med[2] / med[0]).toFixed(2)}, forward ${
      (med[3] / med[1]).toFixed(2)
    }`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}

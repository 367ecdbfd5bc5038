/**
 * The zero-cost baseline's layer ranking: the norm of each layer's LoRA gradient at initialisation. With LoRA on
 * every layer freshly initialised (B = 0, so the adapter changes nothing yet and only B has a gradient), the
 * gradient of the training loss with respect to each layer's B, summed in square over its projections and over
 * the first few training batches, is how much that layer's adapter would move the loss first. No update is
 * made: it costs a few forward and backward passes, not a search.
 *
 * @module
 */

import { BatchPlan } from "../../src/data/batches.ts";
import { batchFeeds, type Sequence } from "../../src/data/sequence.ts";
import type { LoraOptions } from "../../src/flexora/options.ts";
import { loraConfig } from "../../src/flexora/search.ts";
import { buildLoraGradGraph } from "../../src/flexora/train_graphs.ts";
import { initLora } from "../../src/model/lora.ts";
import type { Model } from "../../src/model/model.ts";
import { type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { LOSS_SCALE_INPUT } from "../../src/train/loss_scale.ts";

/** Per-layer gradient norms, and the seconds they took. */
export interface GradientScores {
  readonly scores: number[];
  readonly seconds: number;
}

/** The layer of a LoRA parameter name (`model.layers.3.self_attn.q_proj.lora_B.weight` → 3). */
function layerOf(name: string): number {
  const m = /(?:^|\.)layers\.(\d+)\./.exec(name);
  if (!m) throw new Error(`cannot tell the layer of LoRA parameter '${name}'`);
  return Number(m[1]);
}

/** Each layer's LoRA gradient norm at initialisation over the first `batches` training batches (seeded order). */
export async function gradientScores(
  model: Model,
  train: readonly Sequence[],
  lora: LoraOptions,
  seed: number,
  { batches = 4, batchSize = 8 } = {},
): Promise<GradientScores> {
  const started = performance.now();
  const L = model.config.numLayers;
  const config = loraConfig(model, lora, [...Array(L).keys()]);
  const built = buildLoraGradGraph(model.config, model.weights, { config }, { float: model.dtype });
  const session = await model.session(built);
  const sq = new Array<number>(L).fill(0);
  try {
    const params = initLora(model.config, config, seed);
    const plan = new BatchPlan(train, { batchSize, seed });
    const pad = model.tokenizer.padTokenId ?? 0;
    // A float16 graph takes a loss scale; 1 leaves the gradients as they are.
    const scale: Record<string, HostTensor> = session.inputNames.includes(LOSS_SCALE_INPUT)
      ? { [LOSS_SCALE_INPUT]: hostTensor("float32", [], [1]) }
      : {};
    for (let s = 0; s < Math.min(batches, plan.batchesPerEpoch); s++) {
      const out = await session.run({ ...batchFeeds(plan.batch(s), pad), ...params, ...scale });
      for (const { name } of built.params) {
        const g = out[`grad/${name}`].data as Float32Array;
        let sum = 0;
        for (let i = 0; i < g.length; i++) sum += g[i] * g[i];
        sq[layerOf(name)] += sum;
      }
    }
  } finally {
    await session.release();
  }
  return { scores: sq.map(Math.sqrt), seconds: (performance.now() - started) / 1000 };
}

/** The `k` layers with the highest scores, ascending (ties to the lower layer). */
export function topLayers(scores: readonly number[], k: number): number[] {
  return [...scores.keys()].sort((a, b) => scores[b] - scores[a] || a - b).slice(0, k).sort((a, b) => a - b);
}

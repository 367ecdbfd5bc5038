/**
 * What `flexora finetune` prints at the end: the base model against the tuned one on the test split, and the
 * commands to try next.
 *
 * @module
 */

import { relative } from "node:path";
import type { Example } from "../data/example.ts";
import type { FinetuneResult } from "../flexora/pipeline.ts";
import type { EvalMetrics } from "../flexora/records.ts";
import { evaluate } from "../flexora/retrain.ts";
import { buildScoringGraph } from "../model/graphs.ts";
import type { Model } from "../model/model.ts";
import { Scorer } from "../flexora/score.ts";

/** Loss (and multiple-choice accuracy) of the base model, without an adapter, on `rows`. */
export async function baseMetrics(model: Model, rows: readonly Example[]): Promise<EvalMetrics> {
  const session = await model.session(buildScoringGraph(model.config, model.weights));
  try {
    return await evaluate(new Scorer(session, model.tokenizer), rows);
  } finally {
    await session.release();
  }
}

/** Parameters of the base model (every tensor of its checkpoint). */
export function modelParams(model: Model): number {
  let n = 0;
  for (const t of model.weights.checkpoint.tensors.values()) n += t.shape.reduce((a, b) => a * b, 1);
  return n;
}

const count = (n: number) => n.toLocaleString("en-US");

/**
 * The before/after table: base and tuned test accuracy and loss, selected layers, trainable parameters, time.
 *
 * @example
 * ```ts
 * import { beforeAfter } from "./before_after.ts";
 * const lines = beforeAfter({
 *   base: { loss: 2.1, accuracy: 0.25, n: 32 },
 *   tuned: { loss: 0.2, accuracy: 1, n: 32 },
 *   method: "flexora", layers: [0, 1], numLayers: 3, trainable: 8192, modelParams: 28000, seconds: 9.5,
 * });
 * if (!lines.some((l) => /accuracy \(n=32\)\s+0\.250\s+1\.000/.test(l))) throw new Error("accuracy row");
 * ```
 */
export function beforeAfter(r: {
  base: EvalMetrics;
  tuned: EvalMetrics;
  method: string;
  layers: readonly number[];
  numLayers: number;
  trainable: number;
  modelParams: number;
  seconds: number;
}): string[] {
  const row = (name: string, base: string, tuned: string) => `  ${name.padEnd(22)}${base.padEnd(12)}${tuned}`;
  const share = (100 * r.trainable / r.modelParams).toFixed(r.trainable / r.modelParams < 0.01 ? 2 : 1);
  const lines = [row("", "base model", `tuned (${r.method})`)];
  if (r.base.accuracy !== undefined && r.tuned.accuracy !== undefined) {
    lines.push(
      row(`test accuracy (n=${r.tuned.n})`, r.base.accuracy.toFixed(3), r.tuned.accuracy.toFixed(3)),
    );
  }
  lines.push(
    row("test loss", r.base.loss.toFixed(3), r.tuned.loss.toFixed(3)),
    row("layers with LoRA", "-", `[${r.layers.join(", ")}] of ${r.numLayers}`),
    row("trainable parameters", "-", `${count(r.trainable)} (${share} % of ${count(r.modelParams)})`),
    row("time", "-", `${r.seconds.toFixed(1)} s`),
  );
  return lines;
}

/** The table for a finished run, or null without a test split. */
export function resultTable(model: Model, base: EvalMetrics | null, result: FinetuneResult): string[] | null {
  const tuned = result.retrain.epochs.at(-1)?.test;
  if (!base || !tuned) return null;
  return beforeAfter({
    base,
    tuned,
    method: result.method,
    layers: result.layers,
    numLayers: model.config.numLayers,
    trainable: result.trainableParams,
    modelParams: modelParams(model),
    seconds: Object.values(result.timings).reduce((a, b) => a + b, 0),
  });
}

/** Commands to try next with the adapter in `out`, trained on `model` (a folder or Hub id) and `data`. */
export function nextCommands(out: string, model: string, data: string, prompt: string): string[] {
  const here = (p: string) => {
    const r = relative(Deno.cwd(), p);
    return r === "" ? "." : r.startsWith("..") ? p : r;
  };
  const task = "npx -y deno@2.9.6 task";
  return [
    "Next:",
    `  generate with the adapter:  ${task} flexora generate --model ${here(model)} --adapter ${here(out)} ` +
    `--prompt ${JSON.stringify(prompt)} --max-tokens 1`,
    `  score it:                   ${task} flexora score --model ${here(model)} --adapter ${here(out)} ` +
    `--data ${here(data)}/test.jsonl`,
    `  serve it (docs/sidecar.md): ${task} serve --embedded-model ${here(model)}`,
    `  a model from the Hub:       ${task} finetune --model HuggingFaceTB/SmolLM2-135M --data ${
      here(data)
    } ` +
    "--epochs 3",
  ];
}

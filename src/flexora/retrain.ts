/**
 * Retraining: a fresh, seeded LoRA on only the selected layers (no gates), with a warmup-then-decay schedule,
 * evaluated after each epoch; optional early stopping on validation loss.
 *
 * @module
 */

import { BatchPlan } from "../data/batches.ts";
import { batchFeeds, microBatches, type Sequence } from "../data/sequence.ts";
import { AccumulatingLoop, buildApplyGraph } from "../train/accumulate.ts";
import { buildPrefixGraph, buildScoringGraph, layerInputName } from "../model/graphs.ts";
import { PrefixCache } from "./prefix_cache.ts";
import { initLora, type LoraConfig } from "../model/lora.ts";
import type { Model } from "../model/model.ts";
import { Scorer } from "./score.ts";
import { buildLoraGradGraph, buildLoraTrainStep } from "./train_graphs.ts";
import type { HostTensor } from "../runtime/session.ts";
import { adamw } from "../train/optim.ts";
import { makeSchedule } from "../train/schedule.ts";
import { stateOutputs, type StepResult, TrainLoop } from "../train/step.ts";
import { resumePoint, runStage } from "./loop.ts";
import type { RetrainOptions, RunOptions } from "./options.ts";
import type { RunHooks } from "./progress.ts";
import type { EpochMetrics, EvalMetrics } from "./records.ts";

export type { EpochMetrics, EvalMetrics } from "./records.ts";
import { loraConfig } from "./search.ts";

/** A row to evaluate: a completion, and choices with a label for multiple choice. */
export interface EvalRow {
  readonly prompt: string;
  readonly completion: string;
  readonly choices?: readonly string[];
  readonly label?: number;
}

/** Training sequences and the rows to evaluate on. */
export interface RetrainData {
  readonly train: readonly Sequence[];
  readonly validation?: readonly EvalRow[] | null;
  readonly test?: readonly EvalRow[] | null;
}

/** The retrained adapter and its record. */
export interface RetrainResult {
  readonly config: LoraConfig;
  readonly params: Record<string, HostTensor>;
  readonly epochs: EpochMetrics[];
  readonly steps: number;
  readonly seconds: number;
  readonly stoppedEarly: boolean;
}

/** Loss (and accuracy for multiple choice) of `rows` under an adapter. */
export async function evaluate(scorer: Scorer, rows: readonly EvalRow[]): Promise<EvalMetrics> {
  const { nll } = await scorer.completions(rows);
  const mc = rows.filter((r) => r.choices && r.label !== undefined);
  if (mc.length === 0) return { loss: nll, n: rows.length };
  const { accuracy } = await scorer.multipleChoice(
    mc.map((r) => ({ prompt: r.prompt, choices: r.choices!, label: r.label })),
  );
  return { loss: nll, accuracy, n: rows.length };
}

/**
 * Retrains on `layers`; see the module doc.
 *
 * @example
 * ```ts
 * import { loadDataset, tokenizeExamples } from "../data/mod.ts";
 * import { loadModel } from "../model/model.ts";
 * import { resolveOptions } from "./options.ts";
 * import { retrain } from "./retrain.ts";
 * const fixtures = new URL("../../fixtures/", import.meta.url).pathname;
 * const model = await loadModel(fixtures + "tiny-llama");
 * const data = await loadDataset(fixtures + "tiny-data");
 * const train = tokenizeExamples(data.train, model.tokenizer, { maxLength: 64 }).sequences;
 * const o = resolveOptions({ retrain: { lr: 1e-2, epochs: 1 } });
 * const r = await retrain(model, { train, test: data.test }, [2], {
 *   ...o.retrain, seed: 0, weightDecay: 0, maxGradNorm: 1, checkpointEvery: 0,
 * });
 * if (r.config.layers.join() !== "2" || r.epochs[0].test?.accuracy === undefined) throw new Error("epoch metrics");
 * ```
 */
export async function retrain(
  model: Model,
  data: RetrainData,
  layers: readonly number[],
  options: RetrainOptions & RunOptions,
  hooks: RunHooks = {},
): Promise<RetrainResult> {
  if (data.train.length === 0) {
    throw new Error("retraining needs training examples; the train split is empty");
  }
  const lora = loraConfig(model, options.lora, layers);
  const resumed = await resumePoint("retrain", hooks);
  const initial = resumed?.tensors ?? initLora(model.config, lora, options.seed);
  const trainer = await makeTrainer(model, lora, options, initial, resumed?.step ?? 0);
  const scoring = await model.session(buildScoringGraph(model.config, model.weights, { config: lora }));
  const plan = new BatchPlan(data.train, { batchSize: options.batchSize, seed: options.seed });
  const perEpoch = plan.batchesPerEpoch, total = options.epochs * perEpoch;
  const lrAt = makeSchedule({
    kind: options.schedule,
    lr: options.lr,
    totalSteps: total,
    warmupRatio: options.warmupRatio,
  });

  const epochs: EpochMetrics[] = resumed?.record.epochs ?? [];
  let epochLosses: number[] = resumed?.record.epochLosses ?? [];
  const loop = trainer.loop;
  const valLosses: number[] = epochs.flatMap((e) => (e.validation ? [e.validation.loss] : []));
  let stoppedEarly = false, seconds = 0;
  let params: Record<string, HostTensor>;
  const started = performance.now();
  try {
    seconds = await runStage(
      loop,
      {
        stage: "retrain",
        totalSteps: total,
        learningRates: { "retrain.lr": options.lr },
        stepsPerEpoch: perEpoch,
        run: (s) => trainer.run(plan.batch(s), lrAt(s)),
        after: (_, result) => (epochLosses.push(result.loss), Promise.resolve({})),
        record: () => ({ epochs, epochLosses }),
        endOfEpoch: async (s) => {
          // At most a training micro-batch per run: scoring runs beside the memory the trainer session keeps,
          // so its activations must stay within what the user sized a training pass for.
          const scorer = new Scorer(scoring, model.tokenizer, {
            adapterInputs: await loop.params(),
            batchSize: Math.min(options.microBatchSize, options.batchSize),
          });
          const metrics: EpochMetrics = {
            epoch: plan.epochOf(s) + 1,
            trainLoss: epochLosses.reduce((a, b) => a + b, 0) / epochLosses.length,
            validation: data.validation?.length ? await evaluate(scorer, data.validation) : undefined,
            test: data.test?.length ? await evaluate(scorer, data.test) : undefined,
          };
          epochs.push(metrics);
          epochLosses = [];
          hooks.onProgress?.({
            stage: "evaluate",
            step: s + 1,
            total,
            elapsed: (resumed?.seconds ?? 0) + (performance.now() - started) / 1000,
            eta: 0,
            valLoss: metrics.validation?.loss,
            message: describeEpoch(metrics),
          });
          if (!options.earlyStoppingPatience || !metrics.validation) return false;
          valLosses.push(metrics.validation.loss);
          stoppedEarly = s + 1 < total && shouldStopEarly(valLosses, options.earlyStoppingPatience);
          return stoppedEarly;
        },
      },
      hooks,
      options.checkpointEvery,
      resumed?.seconds,
    );
    params = await loop.params(); // before the sessions go, with the device memory they hold
  } finally {
    await trainer.release();
    await scoring.release();
  }
  return {
    config: lora,
    params,
    epochs,
    steps: loop.steps,
    seconds,
    stoppedEarly,
  };
}

/**
 * The frozen-prefix cache of a retraining run, when enabled and LoRA leaves layers below it frozen: the layer
 * the train graphs start at, and feeds for a batch (token feeds plus that layer's input).
 */
async function makePrefix(model: Model, lora: LoraConfig, options: RetrainOptions, pad: number) {
  const layer = Math.min(...lora.layers);
  if (!(options.prefixCacheMiB > 0) || layer === 0) {
    return {
      fromLayer: undefined,
      feeds: (batch: readonly Sequence[]) => Promise.resolve(batchFeeds(batch, pad)),
    };
  }
  const session = await model.session(
    buildPrefixGraph(model.config, model.weights, layer, { float: model.dtype }),
  );
  const output = layerInputName(layer);
  const cache = new PrefixCache({
    session,
    output,
    width: model.config.hiddenSize,
    dtype: model.dtype,
    budgetBytes: options.prefixCacheMiB * 2 ** 20,
    padId: pad,
  });
  return {
    fromLayer: layer,
    feeds: async (batch: readonly Sequence[]) => ({
      ...batchFeeds(batch, pad),
      [output]: await cache.feeds(batch),
    }),
    release: async () => {
      await cache.release();
      await session.release();
    },
  };
}

/** A trainer for the retraining stage: one fused step graph, or gradient accumulation over micro-batches. */
async function makeTrainer(
  model: Model,
  lora: LoraConfig,
  options: RetrainOptions & { weightDecay: number; maxGradNorm: number; recompute?: boolean },
  initial: Record<string, HostTensor>,
  steps: number,
): Promise<{
  loop: TrainLoop | AccumulatingLoop;
  run(batch: readonly Sequence[], lr: number): Promise<StepResult>;
  release(): Promise<void>;
}> {
  const optimizer = adamw({ weightDecay: options.weightDecay, maxGradNorm: options.maxGradNorm });
  const pad = model.tokenizer.padTokenId ?? 0;
  const prefix = await makePrefix(model, lora, options, pad);
  const graphOptions = { float: model.dtype, fromLayer: prefix.fromLayer, recompute: options.recompute };
  if (options.microBatchSize >= options.batchSize) {
    const { graph, step } = buildLoraTrainStep(
      model.config,
      model.weights,
      { config: lora },
      optimizer,
      graphOptions,
    );
    const session = await model.session({ graph, outputs: step.outputs }, {
      deviceOutputs: stateOutputs(step),
    });
    const loop = new TrainLoop(session, step, initial, steps);
    return {
      loop,
      run: async (batch, lr) => loop.step(await prefix.feeds(batch), lr),
      release: async () => {
        await session.release();
        await prefix.release?.();
      },
    };
  }
  const gradGraph = buildLoraGradGraph(model.config, model.weights, { config: lora }, graphOptions);
  const grad = await model.session(gradGraph);
  const shapes = gradGraph.params;
  const apply = await model.session(buildApplyGraph(shapes, optimizer, gradGraph.graph.wide, "lora"));
  const loop = new AccumulatingLoop({ grad, apply }, shapes.map((p) => p.name), optimizer.slots, initial, {
    steps,
    group: "lora",
  });
  return {
    loop,
    run: async (batch, lr) => {
      const { batches, weights } = microBatches(batch, options.microBatchSize);
      const feeds = [];
      for (const micro of batches) feeds.push(await prefix.feeds(micro));
      return loop.step(feeds, weights, lr);
    },
    release: async () => {
      await grad.release();
      await apply.release();
      await prefix.release?.();
    },
  };
}

/** True when the last `patience` validation losses are all no better than the best one before them. */
export function shouldStopEarly(valLosses: readonly number[], patience: number): boolean {
  if (patience <= 0 || valLosses.length <= patience) return false;
  const best = Math.min(...valLosses.slice(0, valLosses.length - patience));
  return valLosses.slice(-patience).every((v) => v >= best);
}

/** One line about an epoch's metrics. */
export function describeEpoch(m: EpochMetrics): string {
  const parts = [`epoch ${m.epoch}: train loss ${m.trainLoss.toFixed(4)}`];
  if (m.validation) parts.push(`validation loss ${m.validation.loss.toFixed(4)}`);
  if (m.test) {
    parts.push(`test loss ${m.test.loss.toFixed(4)}`);
    if (m.test.accuracy !== undefined) parts.push(`test accuracy ${m.test.accuracy.toFixed(4)}`);
  }
  return parts.join(", ");
}

/**
 * LoRA train-step sessions on a model directory (config.json + safetensors; no tokenizer), built from the config
 * and the checkpoint directly, and their throughput. Variants are timed in interleaved rounds (one step of each
 * per round) so that the machine's load drifts affect them alike and their ratios stay meaningful.
 *
 * @module
 */

import { Graph } from "../src/graph/graph.ts";
import { serialize } from "../src/graph/serialize.ts";
import { batchFeeds, type Sequence } from "../src/data/sequence.ts";
import { PrefixCache } from "../src/flexora/prefix_cache.ts";
import { type ModelConfig, readConfig } from "../src/model/config.ts";
import { buildPrefixGraph, layerInputName, loraInputs } from "../src/model/graphs.ts";
import { initLora, type LoraConfig, validateLora } from "../src/model/lora.ts";
import { openCheckpoint } from "../src/model/safetensors.ts";
import { batchInputs, lmLoss } from "../src/model/lm_loss.ts";
import { buildLoraTrainStep } from "../src/flexora/train_graphs.ts";
import { type BaseDtype, WeightStore } from "../src/model/weights.ts";
import { createSession, type HostTensor, type Session, type SessionOptions } from "../src/runtime/session.ts";
import { adamw } from "../src/train/optim.ts";
import { TrainLoop } from "../src/train/step.ts";
import { Rng } from "../src/util/random.ts";
import { graphMatmulFlops, trainStepFlops } from "./flops.ts";
import { median } from "./stats.ts";

/** A step to time: LoRA (r = 8, α = 16 on q_proj and v_proj) on `layers`; `forwardOnly` runs the loss alone. */
export interface StepVariant {
  readonly name: string;
  readonly layers: readonly number[];
  readonly forwardOnly?: boolean;
  /**
   * Retraining with the frozen-prefix cache: the step starts at the lowest LoRA layer, fed that layer's input
   * from a {@link PrefixCache} (computed by the prefix graph in the first step, read from memory after).
   */
  readonly prefixCached?: boolean;
  /** Per-layer activation checkpointing: each layer's forward rebuilt in the backward. */
  readonly recompute?: boolean;
  /** How the frozen weights are stored (`--base-dtype`; default: as in the checkpoint, F32). */
  readonly baseDtype?: BaseDtype;
}

/** A model, a batch shape, and how many steps to run. */
export interface TrainBenchOptions {
  readonly dir: string;
  readonly batch: number;
  readonly seq: number;
  readonly warmup: number;
  readonly runs: number;
}

/** A ready session: one call runs one step (or one forward pass). */
export interface StepSession {
  readonly variant: StepVariant;
  readonly run: () => Promise<unknown>;
  /** Analytic FLOPs of what `run` computes ({@link trainStepFlops}; the forward part alone with `forwardOnly`). */
  readonly flops: number;
  /** FLOPs of the MatMuls the serialized graph holds (recomputation included). */
  readonly graphMatmulFlops: number;
  readonly session: Session;
}

/** The benchmark's adapter on `layers`. */
export function benchLora(cfg: ModelConfig, layers: readonly number[]): LoraConfig {
  return validateLora(cfg, { rank: 8, alpha: 16, rslora: false, targets: ["q_proj", "v_proj"], layers });
}

/** A seeded batch of `batch` full-length random sequences (no padding). */
function randomSequences(vocab: number, batch: number, seq: number): Sequence[] {
  const rng = new Rng(7);
  return Array.from({ length: batch }, () => ({
    ids: Array.from({ length: seq }, () => rng.int(3, vocab - 1)),
  }));
}

/** The model's config and weights (sessions map the checkpoint's files). */
export interface OpenedModel {
  readonly config: ModelConfig;
  readonly weights: WeightStore;
}

/** Reads config and checkpoint of a model directory. */
export async function openModelDir(dir: string, baseDtype?: BaseDtype): Promise<OpenedModel> {
  const weights = new WeightStore(await openCheckpoint(dir), { baseDtype });
  return { config: await readConfig(dir), weights };
}

/** Builds a variant's graph and session, with LoRA weights as PEFT initialises them and AdamW. */
export async function openStepSession(
  model: OpenedModel,
  variant: StepVariant,
  batch: number,
  seq: number,
  sessionOptions: SessionOptions = {},
): Promise<StepSession> {
  const { config: cfg, weights } = model;
  const lora = benchLora(cfg, variant.layers);
  const sequences = randomSequences(cfg.vocabSize, batch, seq);
  const feeds: Record<string, HostTensor> = batchFeeds(sequences);
  const init = initLora(cfg, lora, 0);
  const fromLayer = variant.prefixCached ? Math.min(...variant.layers) : undefined;
  const counted = trainStepFlops(cfg, lora, batch, seq, fromLayer);
  const sizes = { B: batch, T: seq };
  if (variant.forwardOnly) {
    const g = new Graph({ name: "lora_forward" });
    const { loss } = lmLoss(cfg, weights, batchInputs(g), loraInputs(g, cfg, { config: lora }));
    const outputs = { loss };
    const session = await createSession(serialize(g, outputs), {
      ...await weights.sessionData(),
      ...sessionOptions,
    });
    return {
      variant,
      run: () => session.run({ ...feeds, ...init }),
      flops: counted.forward,
      graphMatmulFlops: graphMatmulFlops(g, outputs, sizes),
      session,
    };
  }
  const { graph, step } = buildLoraTrainStep(cfg, weights, { config: lora }, adamw(), {
    fromLayer,
    recompute: variant.recompute,
  });
  const session = await createSession(serialize(graph, step.outputs), {
    ...await weights.sessionData(),
    ...sessionOptions,
  });
  const loop = new TrainLoop(session, step, init);
  let stepFeeds = () => Promise.resolve(feeds);
  if (fromLayer !== undefined) {
    const prefix = buildPrefixGraph(cfg, weights, fromLayer);
    const output = layerInputName(fromLayer);
    const cache = new PrefixCache({
      session: await createSession(serialize(prefix.graph, prefix.outputs), await weights.sessionData()),
      output,
      width: cfg.hiddenSize,
      dtype: "float32",
      budgetBytes: 2 ** 30,
    });
    stepFeeds = async () => ({ ...feeds, [output]: await cache.feeds(sequences) });
  }
  return {
    variant,
    run: async () => loop.step(await stepFeeds(), 1e-4),
    flops: counted.total,
    graphMatmulFlops: graphMatmulFlops(graph, step.outputs, sizes),
    session,
  };
}

/** One variant's timings. */
export interface StepTiming {
  readonly name: string;
  readonly layers: readonly number[];
  readonly forwardOnly: boolean;
  /** Tokens per step (B·T). */
  readonly tokens: number;
  /** One per timed round. */
  readonly seconds: number[];
  /** The session's first steps (the warmup rounds), to hold against the median. */
  readonly warmupSeconds: number[];
  readonly median: number;
  readonly tokensPerSecond: number;
  readonly flops: number;
  /** Counted FLOPs / median time, in GFLOP/s. */
  readonly gflops: number;
  readonly graphMatmulFlops: number;
}

/** Interleaved timings: per variant, and the GEMM probe's rate in each round (GFLOP/s). */
export interface InterleavedTimings {
  readonly steps: StepTiming[];
  readonly probeGflops: number[];
}

/**
 * Times `variants` in interleaved rounds: `warmup` untimed rounds, then `runs` timed ones, each also running
 * `probe` (which returns a GEMM rate in GFLOP/s) so that every round has its own ceiling. Every session stays
 * open for the whole measurement.
 */
export async function timeStepVariants(
  o: TrainBenchOptions,
  variants: readonly StepVariant[],
  probe: () => Promise<number>,
): Promise<InterleavedTimings> {
  const model = await openModelDir(o.dir);
  const sessions: StepSession[] = [];
  for (const v of variants) sessions.push(await openStepSession(model, v, o.batch, o.seq));
  const seconds = sessions.map(() => [] as number[]);
  const warmupSeconds = sessions.map(() => [] as number[]);
  for (let i = 0; i < o.warmup; i++) {
    for (const [j, s] of sessions.entries()) {
      const t0 = performance.now();
      await s.run();
      warmupSeconds[j].push((performance.now() - t0) / 1000);
    }
  }
  const probeGflops: number[] = [];
  for (let i = 0; i < o.runs; i++) {
    probeGflops.push(await probe());
    for (const [j, s] of sessions.entries()) {
      const t0 = performance.now();
      await s.run();
      seconds[j].push((performance.now() - t0) / 1000);
    }
  }
  for (const s of sessions) await s.session.release();
  const tokens = o.batch * o.seq;
  const steps = sessions.map((s, j) => {
    const m = median(seconds[j]);
    return {
      name: s.variant.name,
      layers: [...s.variant.layers],
      forwardOnly: s.variant.forwardOnly ?? false,
      tokens,
      seconds: seconds[j],
      warmupSeconds: warmupSeconds[j],
      median: m,
      tokensPerSecond: tokens / m,
      flops: s.flops,
      gflops: s.flops / m / 1e9,
      graphMatmulFlops: s.graphMatmulFlops,
    };
  });
  return { steps, probeGflops };
}

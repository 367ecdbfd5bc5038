/**
 * Text generation with a KV cache: one prefill run over the prompt, then one decode run per token, greedy or
 * sampled (temperature, top-p, seeded), until a stop token or the token limit.
 *
 * @module
 */

import type { ComputeFloat } from "../graph/dtype.ts";
import { DeviceTensor, type HostTensor, hostTensor, type Session, type Tensor } from "../runtime/session.ts";
import { Rng } from "../util/random.ts";
import type { ModelConfig } from "./config.ts";

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** Tokens to generate at most. */
  maxTokens: number;
  /** Pick the most likely token (default when no temperature is given). */
  greedy?: boolean;
  /** Sampling temperature (> 0). */
  temperature?: number;
  /** Nucleus sampling: keep the most likely tokens whose probabilities add up to `topP` (default 1). */
  topP?: number;
  /** Seed of the sampler (default 0). */
  seed?: number;
  /** Token ids that end generation (they are not returned). */
  stop?: readonly number[];
  /** The step graph's compute type, which its KV cache is in (default float32; `model.dtype`). */
  dtype?: ComputeFloat;
  /** Extra inputs of the step graph, such as LoRA weights and gate logits. */
  adapterInputs?: Readonly<Record<string, HostTensor>>;
  /** Called with each new token. */
  onToken?: (id: number) => void;
}

/** Checks generation options; messages name the option and the value. */
export function validateGenerateOptions(o: GenerateOptions): void {
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 0) {
    throw new Error(`'maxTokens' must be an integer >= 0, got ${o.maxTokens}`);
  }
  if (o.temperature !== undefined && !(o.temperature > 0)) {
    throw new Error(`'temperature' must be > 0, got ${o.temperature}`);
  }
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) {
    throw new Error(`'topP' must be in (0, 1], got ${o.topP}`);
  }
}

/** Index of the largest value. */
export function argmax(xs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/** Probabilities from logits at a temperature (softmax, computed stably in float64). */
export function softmaxAt(logits: ArrayLike<number>, temperature = 1): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += p[i] = Math.exp((logits[i] - max) / temperature);
  for (let i = 0; i < p.length; i++) p[i] /= sum;
  return p;
}

/** Draws a token from logits with temperature and top-p. */
export function sample(logits: ArrayLike<number>, temperature: number, topP: number, rng: Rng): number {
  const p = softmaxAt(logits, temperature);
  const order = [...p.keys()].sort((a, b) => p[b] - p[a]);
  let kept = 0, mass = 0;
  while (kept < order.length && (kept === 0 || mass < topP)) mass += p[order[kept++]];
  let u = rng.next() * mass;
  for (let i = 0; i < kept; i++) {
    u -= p[order[i]];
    if (u <= 0) return order[i];
  }
  return order[kept - 1];
}

/**
 * Generates up to `maxTokens` ids after `prompt` with a step-graph session, or anything that runs like one. A
 * session that leaves the KV cache on the device (`deviceOutputs: kvOutputs(cfg)` on WebGPU) gets it back as its
 * next run's input without a copy; each cache is freed once the run that replaced it is done. A session that
 * can hold inputs on the device (`resident`, see {@link Session.resident}) gets the adapter's inputs there once,
 * before the prefill, instead of with every token; they are freed when generation ends.
 */
export async function generate(
  session: Pick<Session, "runOnDevice"> & Partial<Pick<Session, "resident">>,
  cfg: ModelConfig,
  prompt: readonly number[],
  options: GenerateOptions,
): Promise<number[]> {
  validateGenerateOptions(options);
  if (prompt.length === 0) throw new Error("the prompt must hold at least one token");
  const rng = new Rng(options.seed ?? 0);
  const sampled = options.temperature !== undefined && !options.greedy;
  const emptyKv = hostTensor(options.dtype ?? "float32", [1, cfg.numKvHeads, 0, cfg.headDim]);
  let past: Record<string, Tensor> = {};
  for (let l = 0; l < cfg.numLayers; l++) {
    past[`past_key_values.${l}.key`] = emptyKv;
    past[`past_key_values.${l}.value`] = emptyKv;
  }
  const out: number[] = [];
  let fresh = [...prompt], cached = 0;
  const free = (kv: Record<string, Tensor>) => {
    for (const t of Object.values(kv)) if (t instanceof DeviceTensor) t.dispose();
  };
  const host = options.adapterInputs ?? {};
  const adapter = session.resident && Object.keys(host).length ? await session.resident(host) : host;
  try {
    while (out.length < options.maxTokens) {
      const T = fresh.length;
      const result = await session.runOnDevice({
        ...past,
        ...adapter,
        input_ids: hostTensor("int64", [1, T], fresh),
        position_ids: hostTensor("int64", [1, T], fresh.map((_, i) => cached + i)),
        attention_mask: hostTensor("int64", [1, cached + T], new Array(cached + T).fill(1)),
        last_index: hostTensor("int64", [1], [T - 1]),
      });
      free(past);
      past = {};
      for (let l = 0; l < cfg.numLayers; l++) {
        past[`past_key_values.${l}.key`] = result[`present.${l}.key`];
        past[`past_key_values.${l}.value`] = result[`present.${l}.value`];
      }
      const logits = result.logits;
      if (logits instanceof DeviceTensor) {
        throw new Error("the step graph's logits must come back to the host");
      }
      const data = logits.data as Float32Array; // wide in every compute type
      const next = sampled ? sample(data, options.temperature!, options.topP ?? 1, rng) : argmax(data);
      if (options.stop?.includes(next)) break;
      out.push(next);
      options.onToken?.(next);
      cached += T;
      fresh = [next];
    }
  } finally {
    free(past);
    free(adapter);
  }
  return out;
}

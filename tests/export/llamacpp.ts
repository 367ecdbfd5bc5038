/**
 * llama.cpp next to flexora's engine for the GGUF parity tests: llama.cpp runs under Node.js through
 * `tools/llamacpp/parity.mjs` (node-llama-cpp, installed there by npm: Deno cannot install it), flexora's engine
 * runs in-process. Both are fed the same token ids, so tokenizer differences cannot hide forward-pass ones.
 *
 * @module
 */

import { join } from "node:path";
import { buildStepGraph } from "../../src/model/graphs.ts";
import type { Model } from "../../src/model/model.ts";
import type { Adapter } from "../../src/model/peft.ts";
import { type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { ROOT } from "../model/shared.ts";

/** The folder holding node-llama-cpp and the Node.js side of the tests. */
export const LLAMACPP_DIR: string = join(ROOT, "tools", "llamacpp");

/** The command that installs node-llama-cpp there (what `.ci/run` runs before the tests). */
export const INSTALL =
  "npm install --prefix tools/llamacpp --ignore-scripts --omit=optional --no-audit --no-fund";

/** True when node-llama-cpp is installed in {@link LLAMACPP_DIR} and `node` runs. */
export async function llamaCppInstalled(): Promise<boolean> {
  const pkg = join(LLAMACPP_DIR, "node_modules", "node-llama-cpp", "package.json");
  if (!(await Deno.stat(pkg).then(() => true, () => false))) return false;
  try {
    return (await new Deno.Command("node", { args: ["--version"], stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** One llama.cpp run: a GGUF model, optionally a GGUF LoRA adapter at scale 1, and what to compute. */
export interface LlamaCppRun {
  readonly model: string;
  readonly lora?: string;
  /** Vocabulary size (rows of the logits). */
  readonly vocab: number;
  /** Token id sequences: llama.cpp's logits after each of their tokens. */
  readonly sequences?: readonly (readonly number[])[];
  /** llama.cpp's greedy continuation of `prompt`, `tokens` ids. */
  readonly generate?: { readonly prompt: readonly number[]; readonly tokens: number };
  /** Texts for llama.cpp's tokenizer (without BOS). */
  readonly tokenize?: readonly string[];
}

/** What llama.cpp answered for one run. */
export interface LlamaCppResult {
  /** [sequence][position][token] */
  readonly logits: number[][][];
  readonly generated?: number[];
  readonly tokens: number[][];
  readonly bos: number | null;
  readonly addBos: boolean;
}

/** Runs llama.cpp under Node.js on `runs`; a failure names the exit code and llama.cpp's stderr. */
export async function runLlamaCpp(runs: readonly LlamaCppRun[]): Promise<LlamaCppResult[]> {
  const child = new Deno.Command("node", {
    args: [join(LLAMACPP_DIR, "parity.mjs")],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify({ runs })));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  if (code !== 0) throw new Error(`node parity.mjs exited ${code}: ${new TextDecoder().decode(stderr)}`);
  return JSON.parse(new TextDecoder().decode(stdout)).runs;
}

/** Log-softmax in float64. */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (x) => x - lse);
}

/**
 * flexora's next-token logits after every token of each sequence [S][T][V], one run of the step graph per
 * sequence: row t of a batch of T copies of the sequence reads its logits at position t.
 */
export async function engineLogits(
  model: Model,
  seqs: readonly (readonly number[])[],
  adapter?: Adapter,
): Promise<Float32Array[][]> {
  const cfg = model.config;
  const session = await model.session(
    buildStepGraph(cfg, model.weights, adapter ? { config: adapter.config } : undefined),
  );
  const out: Float32Array[][] = [];
  for (const ids of seqs) {
    const T = ids.length, empty = hostTensor("float32", [T, cfg.numKvHeads, 0, cfg.headDim]);
    const feeds: Record<string, HostTensor> = {
      ...adapter?.params,
      input_ids: hostTensor("int64", [T, T], ids.flatMap(() => ids)),
      position_ids: hostTensor("int64", [T, T], ids.flatMap(() => ids.map((_, i) => i))),
      attention_mask: hostTensor("int64", [T, T], new Array(T * T).fill(1)),
      last_index: hostTensor("int64", [T], ids.map((_, t) => t * T + t)),
    };
    for (let l = 0; l < cfg.numLayers; l++) {
      feeds[`past_key_values.${l}.key`] = empty;
      feeds[`past_key_values.${l}.value`] = empty;
    }
    const logits = (await session.run(feeds, ["logits"])).logits.data as Float32Array;
    out.push(ids.map((_, t) => logits.slice(t * cfg.vocabSize, (t + 1) * cfg.vocabSize)));
  }
  await session.release();
  return out;
}

/** Largest |log p_ours − log p_llama.cpp| over every position and token of every sequence. */
export function maxLogprobDiff(ours: readonly Float32Array[][], theirs: readonly number[][][]): number {
  let worst = 0;
  ours.forEach((seq, s) =>
    seq.forEach((row, t) => {
      const a = logSoftmax(row), b = logSoftmax(theirs[s][t]);
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    })
  );
  return worst;
}

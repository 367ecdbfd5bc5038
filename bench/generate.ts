/**
 * Generation throughput: greedy decoding with a KV cache, batch 1, through {@link generate} on a step-graph
 * session. Tokens per second count the new tokens over the whole call (prefill of the prompt included).
 *
 * @module
 */

import { serialize } from "../src/graph/serialize.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { generate } from "../src/model/generate.ts";
import { buildStepGraph } from "../src/model/graphs.ts";
import { loadModel } from "../src/model/model.ts";
import { createSession, type Session } from "../src/runtime/session.ts";
import { Rng } from "../src/util/random.ts";
import { openModelDir } from "./train.ts";
import { timeIt } from "./stats.ts";

/** How much to generate. */
export interface GenerateBenchOptions {
  readonly promptTokens: number;
  readonly newTokens: number;
  readonly runs: number;
}

/** One model's figures. */
export interface GenerateResult {
  readonly model: string;
  readonly promptTokens: number;
  readonly newTokens: number;
  readonly seconds: number[];
  readonly median: number;
  readonly tokensPerSecond: number;
}

async function timeGenerate(
  model: string,
  session: Session,
  cfg: ModelConfig,
  o: GenerateBenchOptions,
): Promise<GenerateResult> {
  const rng = new Rng(11);
  const prompt = Array.from({ length: o.promptTokens }, () => rng.int(3, cfg.vocabSize - 1));
  const run = async () => {
    const out = await generate(session, cfg, prompt, { maxTokens: o.newTokens, greedy: true });
    if (out.length !== o.newTokens) {
      throw new Error(`${model}: ${out.length} tokens, expected ${o.newTokens}`);
    }
  };
  const { median, all } = await timeIt(run, o.runs, 1);
  await session.release();
  return {
    model,
    promptTokens: o.promptTokens,
    newTokens: o.newTokens,
    seconds: all,
    median,
    tokensPerSecond: o.newTokens / median,
  };
}

/** A Hugging Face model directory with a tokenizer, loaded in place with {@link loadModel}. */
export async function benchGenerateHf(
  dir: string,
  name: string,
  o: GenerateBenchOptions,
): Promise<GenerateResult> {
  const model = await loadModel(dir);
  const session = await model.session(buildStepGraph(model.config, model.weights));
  return await timeGenerate(name, session, model.config, o);
}

/** A config + safetensors directory without a tokenizer (the random benchmark model). */
export async function benchGenerateDir(
  dir: string,
  name: string,
  o: GenerateBenchOptions,
): Promise<GenerateResult> {
  const { config, weights } = await openModelDir(dir);
  const built = buildStepGraph(config, weights);
  const session = await createSession(
    serialize(built.graph, built.outputs),
    await weights.sessionData(built.graph),
  );
  return await timeGenerate(name, session, config, o);
}

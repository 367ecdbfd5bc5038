/**
 * Loading a Hugging Face model directory: config, safetensors weights (single file or shards) and tokenizer,
 * fully offline.
 *
 * @module
 */

import { resolve } from "node:path";
import { createSession, type Session } from "../runtime/session.ts";
import { serialize } from "../graph/serialize.ts";
import { type ModelConfig, readConfig } from "./config.ts";
import type { BuiltGraph } from "./graphs.ts";
import { openCheckpoint } from "./safetensors.ts";
import { loadTokenizer, type Tokenizer } from "./tokenizer.ts";
import { WeightStore } from "./weights.ts";

/** A loaded model: what graphs are built from. */
export interface Model {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly tokenizer: Tokenizer;
  readonly weights: WeightStore;
  /** Creates an onnxruntime session for a graph built on this model's weights. */
  session(built: BuiltGraph, options?: { threads?: number; providers?: string[] }): Promise<Session>;
}

/**
 * Loads config, checkpoint and tokenizer from `dir`; every problem names the file.
 *
 * @example
 * ```ts
 * import { loadModel } from "./model.ts";
 * const model = await loadModel(new URL("../../fixtures/tiny-llama", import.meta.url).pathname);
 * if (model.config.numLayers !== 3) throw new Error("the fixture has 3 layers");
 * if (model.tokenizer.encode("what color")[0] !== 1) throw new Error("BOS first");
 * ```
 */
export async function loadModel(dir: string): Promise<Model> {
  const root = resolve(dir);
  const config = await readConfig(root);
  const weights = new WeightStore(await openCheckpoint(root));
  const tokenizer = await loadTokenizer(root, { modelVocabSize: config.vocabSize });
  return {
    dir: root,
    config,
    tokenizer,
    weights,
    async session(built, options = {}) {
      return await createSession(serialize(built.graph, built.outputs), {
        threads: options.threads,
        providers: options.providers,
        optimization: built.graph.float === "float64" ? "basic" : "all",
        externalData: await weights.externalData(),
      });
    },
  };
}

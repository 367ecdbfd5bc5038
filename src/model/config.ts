/**
 * A Hugging Face `config.json`, parsed into a typed and validated {@link ModelConfig} for the decoder families
 * flexora trains: Llama, Mistral and Qwen2. Hugging Face spellings (`num_key_value_heads`, `rope_scaling`) live
 * only in this file. Defaults follow `transformers`' `LlamaConfig`, `MistralConfig` and `Qwen2Config`; the sizes
 * a model cannot be built without have no default. Every error names the file, the field and the value seen.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./config.ts";
 * const config = parseConfig({
 *   model_type: "llama", hidden_size: 64, intermediate_size: 172, num_hidden_layers: 5,
 *   num_attention_heads: 8, num_key_value_heads: 4, vocab_size: 512,
 *   max_position_embeddings: 512, rms_norm_eps: 1e-5, tie_word_embeddings: true,
 * }, "stories260K/config.json");
 * if (config.headDim !== 8 || config.ropeTheta !== 10000) throw new Error("head_dim = 64 / 8, theta 10000");
 * ```
 *
 * @module
 */

import { join } from "node:path";

/** The supported decoder families, as spelled in `model_type`. */
export type Architecture = "llama" | "mistral" | "qwen2";

const ARCHITECTURES: readonly Architecture[] = ["llama", "mistral", "qwen2"];

/** Llama 3.1 RoPE frequency scaling (`rope_type: "llama3"`). */
export interface RopeScaling {
  readonly type: "llama3";
  readonly factor: number;
  readonly lowFreqFactor: number;
  readonly highFreqFactor: number;
  readonly originalMaxPositionEmbeddings: number;
}

/** What flexora needs to know about a model, read from its `config.json`. */
export interface ModelConfig {
  /** From `model_type`. */
  readonly architecture: Architecture;
  /** `hidden_size` (D). */
  readonly hiddenSize: number;
  /** `intermediate_size`: the SwiGLU width. */
  readonly intermediateSize: number;
  /** `num_hidden_layers` (L). */
  readonly numLayers: number;
  /** `num_attention_heads` (H). */
  readonly numHeads: number;
  /** `num_key_value_heads` (KV); default H. */
  readonly numKvHeads: number;
  /** `head_dim` (Dh); default D / H, which must then be exact. */
  readonly headDim: number;
  /** `vocab_size` (V). */
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
  readonly rmsNormEps: number;
  /** `rope_theta`; default 10000. */
  readonly ropeTheta: number;
  /** `null` when absent, `null` or of `rope_type` "default". */
  readonly ropeScaling: RopeScaling | null;
  /** `tie_word_embeddings`; default false (as in all three `transformers` config classes). */
  readonly tieWordEmbeddings: boolean;
  /** Bias on q/k/v projections: llama `attention_bias` (default false), mistral false, qwen2 true. */
  readonly qkvBias: boolean;
  /** Bias on the output projection: llama `attention_bias`, otherwise false. */
  readonly oBias: boolean;
  /** Bias on the MLP projections: llama `mlp_bias` (default false), otherwise false. */
  readonly mlpBias: boolean;
  /**
   * Mistral `sliding_window`; qwen2 `sliding_window` only with `use_sliding_window` (where `transformers` applies
   * it to the layers from `max_window_layers` on, which this config does not record); otherwise null.
   */
  readonly slidingWindow: number | null;
  readonly bosTokenId: number | null;
  /** `eos_token_id`, which may be one id or a list; empty when absent. */
  readonly eosTokenIds: readonly number[];
}

/** A `config.json` that flexora cannot use; the message names the file, the field and the value. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** A value as it appeared in the JSON, for messages. */
function show(value: unknown): string {
  return value === undefined ? "undefined" : JSON.stringify(value);
}

const isTokenId = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Typed reads of one JSON object's fields; `null` counts as absent, as it does for `transformers`. */
class Fields {
  constructor(
    readonly json: Record<string, unknown>,
    readonly file: string,
    readonly prefix = "",
  ) {}

  name(field: string): string {
    return `'${this.prefix}${field}'`;
  }

  /** `<file>: '<field>' <requirement>, got <value>`. */
  error(field: string, requirement: string, value: unknown): ConfigError {
    return new ConfigError(`${this.file}: ${this.name(field)} ${requirement}, got ${show(value)}`);
  }

  has(field: string): boolean {
    return this.json[field] !== undefined && this.json[field] !== null;
  }

  #read<T>(field: string, fallback: T | undefined, ok: (v: unknown) => boolean, must: string): T {
    if (!this.has(field)) {
      if (fallback === undefined) {
        throw new ConfigError(`${this.file}: missing required field ${this.name(field)}`);
      }
      return fallback;
    }
    const value = this.json[field];
    if (!ok(value)) throw this.error(field, `must be ${must}`, value);
    return value as T;
  }

  /** A size: a positive integer. */
  size(field: string, fallback?: number): number {
    return this.#read(field, fallback, (v) => Number.isInteger(v) && (v as number) > 0, "a positive integer");
  }

  /** A positive finite number (epsilons, theta, factors). */
  positive(field: string, fallback?: number): number {
    return this.#read(
      field,
      fallback,
      (v) => typeof v === "number" && v > 0 && Number.isFinite(v),
      "a positive finite number",
    );
  }

  bool(field: string, fallback: boolean): boolean {
    return this.#read(field, fallback, (v) => typeof v === "boolean", "true or false");
  }

  /** A token id: an integer >= 0. */
  tokenId(field: string): number {
    return this.#read<number>(field, undefined, isTokenId, "a token id (integer >= 0)");
  }

  string(field: string, fallback?: string): string {
    return this.#read(field, fallback, (v) => typeof v === "string", "a string");
  }
}

function parseArchitecture(f: Fields): Architecture {
  const modelType = f.string("model_type");
  if (!(ARCHITECTURES as readonly string[]).includes(modelType)) {
    throw f.error("model_type", `must be one of ${ARCHITECTURES.join(", ")}`, modelType);
  }
  return modelType as Architecture;
}

/** `rope_scaling` (or a `transformers` v5 `rope_parameters`) object; its type may be spelled `rope_type` or `type`. */
function parseRopeScaling(value: unknown, f: Fields, field: string): RopeScaling | null {
  if (value === undefined || value === null) return null;
  if (!isObject(value)) throw f.error(field, "must be an object or null", value);
  const kind = value.rope_type ?? value.type;
  if (kind === "default") return null;
  if (kind !== "llama3") {
    throw f.error(
      `${field}.rope_type`,
      `must be "default" or "llama3" (the only RoPE variants supported)`,
      kind,
    );
  }
  const s = new Fields(value, f.file, `${field}.`);
  const scaling: RopeScaling = {
    type: "llama3",
    factor: s.positive("factor"),
    lowFreqFactor: s.positive("low_freq_factor"),
    highFreqFactor: s.positive("high_freq_factor"),
    originalMaxPositionEmbeddings: s.size("original_max_position_embeddings"),
  };
  if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
    const must = `must be greater than ${s.name("low_freq_factor")} (${scaling.lowFreqFactor})`;
    throw s.error("high_freq_factor", must, scaling.highFreqFactor);
  }
  return scaling;
}

/** Theta and scaling from `rope_theta` + `rope_scaling`, or from `transformers` v5's `rope_parameters`. */
function parseRope(f: Fields): { ropeTheta: number; ropeScaling: RopeScaling | null } {
  const params = f.json.rope_parameters;
  if (isObject(params)) {
    const p = new Fields(params, f.file, "rope_parameters.");
    return {
      ropeTheta: p.positive("rope_theta", f.positive("rope_theta", 10000)),
      ropeScaling: parseRopeScaling(params, f, "rope_parameters"),
    };
  }
  return {
    ropeTheta: f.positive("rope_theta", 10000),
    ropeScaling: parseRopeScaling(f.json.rope_scaling, f, "rope_scaling"),
  };
}

/** Head counts and size; KV must divide H, and without `head_dim` H must divide D. */
function parseHeads(
  f: Fields,
  hiddenSize: number,
): { numHeads: number; numKvHeads: number; headDim: number } {
  const numHeads = f.size("num_attention_heads");
  const numKvHeads = f.size("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw f.error("num_key_value_heads", `must divide 'num_attention_heads' (${numHeads})`, numKvHeads);
  }
  if (!f.has("head_dim") && hiddenSize % numHeads !== 0) {
    const must = `must divide 'hidden_size' (${hiddenSize}) when 'head_dim' is not given`;
    throw f.error("num_attention_heads", must, numHeads);
  }
  return { numHeads, numKvHeads, headDim: f.size("head_dim", hiddenSize / numHeads) };
}

/** Biases per family, as the `transformers` modeling code builds the projections. */
function parseBiases(
  f: Fields,
  architecture: Architecture,
): { qkvBias: boolean; oBias: boolean; mlpBias: boolean } {
  switch (architecture) {
    case "llama": {
      const attention = f.bool("attention_bias", false);
      return { qkvBias: attention, oBias: attention, mlpBias: f.bool("mlp_bias", false) };
    }
    case "mistral": // MistralAttention and MistralMLP are built with bias=False whatever the config says
      return { qkvBias: false, oBias: false, mlpBias: false };
    case "qwen2": // Qwen2Attention: bias on q/k/v, none on o
      return { qkvBias: true, oBias: false, mlpBias: false };
  }
}

function parseSlidingWindow(f: Fields, architecture: Architecture): number | null {
  switch (architecture) {
    case "llama":
      return null;
    case "mistral":
      return f.has("sliding_window") ? f.size("sliding_window") : null;
    case "qwen2":
      return f.bool("use_sliding_window", false) ? f.size("sliding_window") : null;
  }
}

function parseEosTokenIds(f: Fields): number[] {
  if (!f.has("eos_token_id")) return [];
  const value = f.json.eos_token_id;
  const ids = Array.isArray(value) ? value : [value];
  if (!ids.every(isTokenId)) {
    throw f.error("eos_token_id", "must be a token id (integer >= 0) or a list of them", value);
  }
  return ids as number[];
}

/**
 * Validates a parsed `config.json`; `file` is used in messages.
 *
 * @example
 * ```ts
 * import { ConfigError, parseConfig } from "./config.ts";
 * try {
 *   parseConfig({ model_type: "gpt2" }, "gpt2/config.json");
 * } catch (e) {
 *   if (!(e instanceof ConfigError) || !e.message.includes(`'model_type'`)) throw e;
 * }
 * ```
 */
export function parseConfig(json: unknown, file: string): ModelConfig {
  if (!isObject(json)) throw new ConfigError(`${file}: expected a JSON object, got ${show(json)}`);
  const f = new Fields(json, file);
  const architecture = parseArchitecture(f);
  for (const field of ["hidden_act", "hidden_activation"]) {
    // transformers' ACT2FN treats "swish" as SiLU too
    if (f.has(field) && !["silu", "swish"].includes(json[field] as string)) {
      throw f.error(field, `must be "silu" (SwiGLU is the only MLP supported)`, json[field]);
    }
  }
  const hiddenSize = f.size("hidden_size");
  return {
    architecture,
    hiddenSize,
    intermediateSize: f.size("intermediate_size"),
    numLayers: f.size("num_hidden_layers"),
    ...parseHeads(f, hiddenSize),
    vocabSize: f.size("vocab_size"),
    maxPositionEmbeddings: f.size("max_position_embeddings"),
    rmsNormEps: f.positive("rms_norm_eps"),
    ...parseRope(f),
    tieWordEmbeddings: f.bool("tie_word_embeddings", false),
    ...parseBiases(f, architecture),
    slidingWindow: parseSlidingWindow(f, architecture),
    bosTokenId: f.has("bos_token_id") ? f.tokenId("bos_token_id") : null,
    eosTokenIds: parseEosTokenIds(f),
  };
}

/**
 * Reads and parses `<dir>/config.json`.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { readConfig } from "./config.ts";
 * const config = await readConfig(fileURLToPath(new URL("../../fixtures/tiny-llama", import.meta.url)));
 * if (config.numKvHeads !== 2) throw new Error(`the tiny Llama has 2 key/value heads, got ${config.numKvHeads}`);
 * ```
 */
export async function readConfig(dir: string): Promise<ModelConfig> {
  const file = join(dir, "config.json");
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
    throw new ConfigError(`${file}: cannot read the model config (${why})`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return parseConfig(json, file);
}

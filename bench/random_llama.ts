/**
 * Seeded random Llama models in Hugging Face layout (float32 `model.safetensors` and `config.json`, no
 * tokenizer) for the train-step, memory and generation benchmarks.
 *
 * Legend: D model width, I intermediate width, L layers, H heads, KV key/value heads, Dh head size, V vocab.
 *
 * @module
 */

import { join } from "node:path";
import { type ModelConfig, parseConfig } from "../src/model/config.ts";
import { type TensorToWrite, writeSafetensors } from "../src/model/safetensors.ts";
import { Rng } from "../src/util/random.ts";

/** An architecture with Hugging Face `config.json` spellings. */
export interface LlamaShape {
  readonly hidden_size: number; // D
  readonly intermediate_size: number; // I
  readonly num_hidden_layers: number; // L
  readonly num_attention_heads: number; // H
  readonly num_key_value_heads: number; // KV
  readonly head_dim: number; // Dh
  readonly vocab_size: number; // V
}

/** The benchmark model: about 100M parameters with tied embeddings (75.5M in the layers, 24.6M embedding). */
export const LLAMA_100M: LlamaShape = {
  hidden_size: 768,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_key_value_heads: 4,
  head_dim: 64,
  vocab_size: 32000,
};

/** TinyLlama-1.1B's shape with tied embeddings (1.03B parameters, 3946 MiB float32): issue #17's 1B runs. */
export const LLAMA_1B: LlamaShape = {
  hidden_size: 2048,
  intermediate_size: 5632,
  num_hidden_layers: 22,
  num_attention_heads: 32,
  num_key_value_heads: 4,
  head_dim: 64,
  vocab_size: 32000,
};

/** The `--quick` model: the same layout at about 4M parameters. */
export const LLAMA_QUICK: LlamaShape = {
  hidden_size: 256,
  intermediate_size: 688,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 64,
  vocab_size: 4096,
};

/** The `config.json` of a shape (tied embeddings, float32). */
export function llamaConfigJson(shape: LlamaShape): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    ...shape,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    hidden_act: "silu",
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float32",
  };
}

/**
 * Random weights with Hugging Face names and [out, in] layouts: linear layers uniform with standard deviation
 * 1/√fan_in, the embedding with standard deviation 0.02, norm scales 1. Uniform draws are used because a 100M
 * model's worth of Box–Muller normals takes several seconds in JavaScript.
 */
function randomWeights(shape: LlamaShape, seed: number): TensorToWrite[] {
  const rng = new Rng(seed);
  const { hidden_size: D, intermediate_size: I, num_hidden_layers: L, vocab_size: V } = shape;
  const q = shape.num_attention_heads * shape.head_dim, kv = shape.num_key_value_heads * shape.head_dim;
  const uniform = (name: string, dims: number[], std: number): TensorToWrite => {
    const a = std * Math.sqrt(3);
    const data = new Float32Array(dims[0] * (dims[1] ?? 1));
    for (let i = 0; i < data.length; i++) data[i] = a * (2 * rng.next() - 1);
    return { name, dtype: "F32", shape: dims, data };
  };
  const linear = (name: string, out: number, inp: number) => uniform(name, [out, inp], 1 / Math.sqrt(inp));
  const ones = (name: string): TensorToWrite => ({
    name,
    dtype: "F32",
    shape: [D],
    data: new Float32Array(D).fill(1),
  });
  const weights = [uniform("model.embed_tokens.weight", [V, D], 0.02)]; // [V, D]
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    weights.push(
      ones(`${p}.input_layernorm.weight`),
      linear(`${p}.self_attn.q_proj.weight`, q, D),
      linear(`${p}.self_attn.k_proj.weight`, kv, D),
      linear(`${p}.self_attn.v_proj.weight`, kv, D),
      linear(`${p}.self_attn.o_proj.weight`, D, q),
      ones(`${p}.post_attention_layernorm.weight`),
      linear(`${p}.mlp.gate_proj.weight`, I, D),
      linear(`${p}.mlp.up_proj.weight`, I, D),
      linear(`${p}.mlp.down_proj.weight`, D, I),
    );
  }
  weights.push(ones("model.norm.weight"));
  return weights;
}

/** A written model: its directory, parsed config and parameter count. */
export interface WrittenModel {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly parameters: number;
}

/** Writes `config.json` and `model.safetensors` of a seeded random model into `dir`. */
export async function writeRandomLlama(dir: string, shape: LlamaShape, seed = 1): Promise<WrittenModel> {
  const json = llamaConfigJson(shape);
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(json, null, 2) + "\n");
  const weights = randomWeights(shape, seed);
  await writeSafetensors(join(dir, "model.safetensors"), weights, { format: "pt" });
  const parameters = weights.reduce((n, w) => n + w.data.length, 0);
  return { dir, config: parseConfig(json, join(dir, "config.json")), parameters };
}

/**
 * A Hugging Face model directory (llama, mistral, qwen2) as one GGUF file llama.cpp and Ollama load: llama.cpp's
 * tensor names, q/k rows permuted for its RoPE, its hyperparameter keys, the tokenizer, and for Llama 3 RoPE
 * scaling the per-frequency factors as `rope_freqs.weight` (what llama.cpp's converter writes).
 *
 * Matrices are stored as F32 or F16; one-dimensional tensors (norms, biases, RoPE factors) stay F32, as
 * llama.cpp's converter keeps them. A tied LM head is left out: llama.cpp then uses `token_embd` for it.
 *
 * @module
 */

import { basename, resolve } from "node:path";
import { type ModelConfig, readConfig } from "../../model/config.ts";
import { inverseFrequencies } from "../../model/rope.ts";
import { type Checkpoint, openCheckpoint, readTensorF32, type TensorInfo } from "../../model/safetensors.ts";
import { type GgufDType, type GgufTensor, meta, type Metadata, writeGguf } from "./container.ts";
import { ggufArchitecture, ggufName, permuteRope, ropeHeads } from "./names.ts";
import { vocabMetadata } from "./vocab.ts";

/** llama.cpp's `general.file_type`: all F32, or F16 matrices. */
const FILE_TYPE: Readonly<Record<GgufDType, number>> = { F32: 0, F16: 1 };

/** What an export wrote. */
export interface GgufExport {
  readonly path: string;
  readonly architecture: string;
  readonly dtype: GgufDType;
  readonly tensors: number;
  readonly bytes: number;
}

/**
 * llama.cpp's hyperparameter keys for a model (under its architecture's prefix).
 *
 * @example
 * ```ts
 * import { parseConfig } from "../../model/config.ts";
 * import { hyperparameters } from "./model.ts";
 * const cfg = parseConfig({
 *   model_type: "qwen2", hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
 *   num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 100, max_position_embeddings: 256,
 *   rms_norm_eps: 1e-6,
 * }, "config.json");
 * if (hyperparameters(cfg)["qwen2.attention.head_count_kv"].value !== 2) throw new Error();
 * ```
 */
export function hyperparameters(cfg: ModelConfig): Metadata {
  const arch = ggufArchitecture(cfg.architecture).name;
  return {
    [`${arch}.vocab_size`]: meta.u32(cfg.vocabSize),
    [`${arch}.context_length`]: meta.u32(cfg.maxPositionEmbeddings),
    [`${arch}.embedding_length`]: meta.u32(cfg.hiddenSize),
    [`${arch}.feed_forward_length`]: meta.u32(cfg.intermediateSize),
    [`${arch}.block_count`]: meta.u32(cfg.numLayers),
    [`${arch}.attention.head_count`]: meta.u32(cfg.numHeads),
    [`${arch}.attention.head_count_kv`]: meta.u32(cfg.numKvHeads),
    [`${arch}.attention.key_length`]: meta.u32(cfg.headDim),
    [`${arch}.attention.value_length`]: meta.u32(cfg.headDim),
    [`${arch}.attention.layer_norm_rms_epsilon`]: meta.f32(cfg.rmsNormEps),
    [`${arch}.rope.dimension_count`]: meta.u32(cfg.headDim),
    [`${arch}.rope.freq_base`]: meta.f32(cfg.ropeTheta),
  };
}

/**
 * Llama 3 RoPE scaling as llama.cpp takes it: a divisor per frequency [Dh/2] (1 for high frequencies, the
 * factor for low ones, interpolated between), the ratio of the unscaled to the scaled inverse frequencies that
 * flexora's own RoPE uses. Null without scaling.
 */
export function ropeFactors(cfg: ModelConfig): Float32Array | null {
  if (!cfg.ropeScaling) return null;
  const unscaled = inverseFrequencies({ ...cfg, ropeScaling: null });
  const scaled = inverseFrequencies(cfg);
  return unscaled.map((f, i) => f / scaled[i]);
}

/** The dtype a base export uses when none is asked for: F16 when the checkpoint stores 16-bit matrices. */
function defaultDType(tensors: Iterable<TensorInfo>): GgufDType {
  for (const t of tensors) {
    if (t.shape.length === 2 && (t.dtype === "F16" || t.dtype === "BF16")) return "F16";
  }
  return "F32";
}

/** Hugging Face names of the tensors llama.cpp cannot run the model without. */
function requiredTensors(cfg: ModelConfig): string[] {
  const names = ["model.embed_tokens.weight", "model.norm.weight"];
  if (!cfg.tieWordEmbeddings) names.push("lm_head.weight");
  const modules = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    .concat(["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"]);
  for (let l = 0; l < cfg.numLayers; l++) names.push(...modules.map((m) => `model.layers.${l}.${m}.weight`));
  return names;
}

/** The model's tensors as GGUF tensors (read when written). */
function modelTensors(cfg: ModelConfig, checkpoint: Checkpoint, dtype: GgufDType) {
  for (const name of requiredTensors(cfg)) checkpoint.get(name); // names the missing tensor
  const out: GgufTensor[] = [];
  for (const [name, info] of checkpoint.tensors) {
    if (name === "lm_head.weight" && cfg.tieWordEmbeddings) continue;
    const target = ggufName(name);
    if (target === null) continue;
    const heads = ropeHeads(cfg, name), cols = info.shape.length === 2 ? info.shape[1] : 1;
    out.push({
      name: target,
      shape: info.shape,
      dtype: info.shape.length >= 2 ? dtype : "F32",
      data: async () => {
        const data = await readTensorF32(info);
        return heads ? permuteRope(data, heads, cols) : data;
      },
    });
  }
  const factors = ropeFactors(cfg);
  if (factors) {
    out.push({
      name: "rope_freqs.weight",
      shape: [factors.length],
      dtype: "F32",
      data: () => factors,
    });
  }
  return out;
}

/**
 * Writes the model in `dir` to the GGUF file `out`. `dtype` defaults to F16 for a checkpoint of 16-bit matrices
 * and F32 otherwise. Unsupported architectures, tensors llama.cpp has no name for and tokenizers it cannot run
 * are errors naming the file, tensor or value.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { gguf } from "@huggingface/gguf";
 * import { exportModelGguf } from "./model.ts";
 * const dir = fileURLToPath(new URL("../../../fixtures/tiny-llama-spm", import.meta.url));
 * const out = `${await Deno.makeTempDir()}/tiny-llama.gguf`;
 * await exportModelGguf(dir, out, { dtype: "F32" });
 * const { metadata } = await gguf(out, { allowLocalFile: true });
 * if ((metadata as Record<string, unknown>)["llama.block_count"] !== 3) throw new Error("three layers");
 * ```
 */
export async function exportModelGguf(
  dir: string,
  out: string,
  options: { dtype?: GgufDType; name?: string } = {},
): Promise<GgufExport> {
  const root = resolve(dir);
  const cfg = await readConfig(root);
  const arch = ggufArchitecture(cfg.architecture).name;
  const checkpoint = await openCheckpoint(root);
  const dtype = options.dtype ?? defaultDType(checkpoint.tensors.values());
  const tensors = modelTensors(cfg, checkpoint, dtype);
  const metadata: Metadata = {
    "general.architecture": meta.string(arch),
    "general.type": meta.string("model"),
    "general.name": meta.string(options.name ?? basename(root)),
    "general.file_type": meta.u32(FILE_TYPE[dtype]),
    ...hyperparameters(cfg),
    ...await vocabMetadata(root, cfg),
  };
  const { bytes } = await writeGguf(out, metadata, tensors);
  return { path: resolve(out), architecture: arch, dtype, tensors: tensors.length, bytes };
}

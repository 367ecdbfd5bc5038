/**
 * llama.cpp's side of a Hugging Face checkpoint: its architecture name, its tensor names, and the row order its
 * RoPE expects. One pure mapping from Hugging Face names to llama.cpp names serves the base model and the LoRA
 * adapters (`<base tensor>.lora_a` / `.lora_b`).
 *
 * llama.cpp rotates Llama's q and k with interleaved pairs (ggml's "normal" RoPE, as Meta's original checkpoints
 * were laid out), while Hugging Face's Llama rotates the two halves of each head ("rotate half"). Its converter
 * therefore permutes the rows of q_proj and k_proj within each head, and so does {@link permuteRope}. Qwen2 uses
 * ggml's NeoX RoPE, which is rotate-half already: no permutation.
 *
 * Legend: H heads, KV key/value heads, Dh head size, D model width, R LoRA rank.
 *
 * @module
 */

import type { Architecture, ModelConfig } from "../../model/config.ts";

/** llama.cpp architectures flexora exports to. */
export type GgufArchitecture = "llama" | "qwen2";

/** How a supported family appears to llama.cpp: Mistral is served as a Llama (llama.cpp has no "mistral"). */
const ARCHITECTURES: Readonly<Record<Architecture, { name: GgufArchitecture; permuteQk: boolean }>> = {
  llama: { name: "llama", permuteQk: true },
  mistral: { name: "llama", permuteQk: true },
  qwen2: { name: "qwen2", permuteQk: false },
};

/**
 * llama.cpp's architecture for a model, and whether q/k rows are permuted for its RoPE.
 *
 * @example
 * ```ts
 * import { ggufArchitecture } from "./names.ts";
 * if (ggufArchitecture("mistral").name !== "llama") throw new Error("llama.cpp runs Mistral as a Llama");
 * ```
 */
export function ggufArchitecture(architecture: Architecture): { name: GgufArchitecture; permuteQk: boolean } {
  const found = ARCHITECTURES[architecture];
  if (!found) {
    throw new Error(
      `GGUF export supports ${Object.keys(ARCHITECTURES).join(", ")} models, got '${architecture}'`,
    );
  }
  return found;
}

const LAYER = /^model\.layers\.(\d+)\.(.+)$/;

// deno-fmt-ignore
const LAYER_TENSORS: Readonly<Record<string, string>> = {
  "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
};

const GLOBAL_TENSORS: Readonly<Record<string, string>> = {
  "model.embed_tokens": "token_embd",
  "model.norm": "output_norm",
  "lm_head": "output",
};

/**
 * llama.cpp's name of a Hugging Face tensor (`model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`),
 * or null for one llama.cpp does not load (RoPE's cached `rotary_emb.inv_freq`).
 *
 * @example
 * ```ts
 * import { ggufName } from "./names.ts";
 * if (ggufName("model.layers.3.mlp.down_proj.weight") !== "blk.3.ffn_down.weight") throw new Error();
 * if (ggufName("lm_head.weight") !== "output.weight") throw new Error();
 * ```
 */
export function ggufName(name: string): string | null {
  if (name.endsWith(".rotary_emb.inv_freq")) return null;
  const dot = name.lastIndexOf(".");
  const path = name.slice(0, dot), kind = name.slice(dot + 1);
  if (kind !== "weight" && kind !== "bias") {
    throw new Error(`Tensor '${name}' has no llama.cpp counterpart (only weights and biases are exported)`);
  }
  const global = GLOBAL_TENSORS[path];
  if (global) return `${global}.${kind}`;
  const m = LAYER.exec(path);
  const local = m ? LAYER_TENSORS[m[2]] : undefined;
  if (!m || !local) throw new Error(`Tensor '${name}' has no llama.cpp counterpart`);
  return `blk.${m[1]}.${local}.${kind}`;
}

/** Heads whose rows must be permuted for llama.cpp's RoPE in `name` (q: H, k: KV), or 0 for none. */
export function ropeHeads(cfg: ModelConfig, name: string): number {
  if (!ggufArchitecture(cfg.architecture).permuteQk) return 0;
  if (/\.self_attn\.q_proj\./.test(name)) return cfg.numHeads;
  if (/\.self_attn\.k_proj\./.test(name)) return cfg.numKvHeads;
  return 0;
}

/**
 * Reorders the rows of a projection's output side [heads·Dh, cols] from rotate-half to interleaved pairs: in each
 * head, row 2i + j of the result is row j·Dh/2 + i of the input (j = 0, 1). Used for q/k weights and biases
 * (cols 1) and LoRA B matrices (cols R).
 *
 * @example
 * ```ts
 * import { permuteRope } from "./names.ts";
 * // one head, Dh 4, one column: halves [a0 a1 | b0 b1] become pairs [a0 b0 a1 b1]
 * if (permuteRope(new Float32Array([0, 1, 2, 3]), 1, 1).join() !== "0,2,1,3") throw new Error();
 * ```
 */
export function permuteRope(data: Float32Array, heads: number, cols: number): Float32Array {
  const rows = data.length / cols, dh = rows / heads;
  if (!Number.isInteger(rows) || !Number.isInteger(dh) || dh % 2 !== 0) {
    throw new Error(
      `Cannot permute ${data.length} values as ${heads} heads of even size with ${cols} columns`,
    );
  }
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < dh / 2; i++) {
      for (let j = 0; j < 2; j++) {
        const from = (h * dh + j * (dh / 2) + i) * cols, to = (h * dh + 2 * i + j) * cols;
        out.set(data.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

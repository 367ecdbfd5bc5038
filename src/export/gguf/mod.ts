/**
 * GGUF export for llama.cpp and Ollama: base models (llama, mistral, qwen2) from a Hugging Face directory, and
 * PEFT LoRA adapters as GGUF LoRA adapters.
 *
 * @example
 * ```ts
 * import { ggufName } from "./mod.ts";
 * if (ggufName("model.embed_tokens.weight") !== "token_embd.weight") throw new Error();
 * ```
 *
 * @module
 */

export { exportAdapterGguf, ggufAlpha } from "./adapter.ts";
export {
  ALIGNMENT,
  type GgufDType,
  type GgufTensor,
  type Metadata,
  type MetaValue,
  writeGguf,
} from "./container.ts";
export { exportModelGguf, type GgufExport, hyperparameters, ropeFactors } from "./model.ts";
export { type GgufArchitecture, ggufArchitecture, ggufName, permuteRope, ropeHeads } from "./names.ts";
export { vocabMetadata } from "./vocab.ts";

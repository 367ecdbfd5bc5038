/**
 * Names of LoRA parameters, with no dependencies: the projections LoRA may target, Hugging Face module paths, and
 * the one mapping between in-memory names (`model.layers.3.self_attn.q_proj.lora_A.weight`) and the keys PEFT
 * saves (`base_model.model.` in front). Plugins and the model engine share it.
 *
 * @module
 */

/** Projections LoRA may target. */
export type TargetModule = "q_proj" | "k_proj" | "v_proj" | "o_proj" | "gate_proj" | "up_proj" | "down_proj";

/** Every target module, in the order parameters are listed. */
export const TARGET_MODULES: readonly TargetModule[] = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
];

/** True for the MLP projections (the others are attention's). */
export function isMlp(module: TargetModule): boolean {
  return module === "gate_proj" || module === "up_proj" || module === "down_proj";
}

/** Hugging Face module path of a projection: `model.layers.3.self_attn.q_proj`. */
export function modulePath(layer: number, module: TargetModule): string {
  return `model.layers.${layer}.${isMlp(module) ? "mlp" : "self_attn"}.${module}`;
}

/** Names of the A and B parameters of a module's LoRA branch. */
export function loraNames(layer: number, module: TargetModule): { a: string; b: string } {
  const path = modulePath(layer, module);
  return { a: `${path}.lora_A.weight`, b: `${path}.lora_B.weight` };
}

const PREFIX = "base_model.model.";
const KEY = /^model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)\.lora_([AB])\.weight$/;

/** The key PEFT saves an in-memory parameter under. */
export function toPeftKey(name: string): string {
  return PREFIX + name;
}

/** The in-memory parameter name of a saved PEFT key, or null when the key is not a LoRA weight of a decoder layer. */
export function fromPeftKey(
  key: string,
): { name: string; layer: number; module: string; matrix: "A" | "B" } | null {
  if (!key.startsWith(PREFIX)) return null;
  const name = key.slice(PREFIX.length).replace(/\.lora_([AB])\.default\.weight$/, ".lora_$1.weight");
  const m = KEY.exec(name);
  if (!m) return null;
  const known = TARGET_MODULES.includes(m[3] as TargetModule);
  if (known && (m[2] === "mlp") !== isMlp(m[3] as TargetModule)) return null; // e.g. self_attn.gate_proj
  return { name, layer: Number(m[1]), module: m[3], matrix: m[4] as "A" | "B" };
}

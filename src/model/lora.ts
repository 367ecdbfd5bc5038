/**
 * LoRA adapters on a decoder's projections, with optional per-layer gates.
 *
 * A module's branch adds scale · g_l · (x Aᵀ) Bᵀ to its output, with A [R, in], B [out, R], scale = α/R (or
 * α/√R with rsLoRA) and g_l the gate of layer l (1 when no gates are used). Parameter names are the Hugging Face
 * module paths (`model.layers.3.self_attn.q_proj.lora_A.weight`), so a PEFT adapter is a rename away.
 *
 * @module
 */

import { type HostTensor, hostTensor } from "../runtime/session.ts";
import { Rng } from "../util/random.ts";
import type { ModelConfig } from "./config.ts";
import { loraNames, TARGET_MODULES, type TargetModule } from "./names.ts";

export { isMlp, loraNames, modulePath, TARGET_MODULES, type TargetModule } from "./names.ts";

/** Where LoRA goes and how it is scaled. */
export interface LoraConfig {
  /** Rank R. */
  readonly rank: number;
  /** `lora_alpha`. */
  readonly alpha: number;
  /** Scale by α/√R instead of α/R. */
  readonly rslora: boolean;
  readonly targets: readonly TargetModule[];
  /** Layers that carry LoRA, ascending. */
  readonly layers: readonly number[];
}

/** Thrown for a LoRA configuration that does not fit the model; the message names the field and value. */
export class LoraConfigError extends Error {
  override name = "LoraConfigError";
}

/** Checks a LoRA configuration against a model and returns it with layers sorted and unique. */
export function validateLora(cfg: ModelConfig, lora: LoraConfig): LoraConfig {
  if (!Number.isInteger(lora.rank) || lora.rank <= 0) {
    throw new LoraConfigError(`'rank' must be a positive integer, got ${lora.rank}`);
  }
  if (!(Number.isFinite(lora.alpha) && lora.alpha > 0)) {
    throw new LoraConfigError(`'lora_alpha' must be a positive number, got ${lora.alpha}`);
  }
  if (lora.targets.length === 0) throw new LoraConfigError(`'target_modules' must name at least one module`);
  for (const t of lora.targets) {
    if (!TARGET_MODULES.includes(t)) {
      throw new LoraConfigError(
        `'target_modules' has '${t}', which ${cfg.architecture} models lack; choose from ${
          TARGET_MODULES.join(", ")
        }`,
      );
    }
  }
  for (const l of lora.layers) {
    if (!Number.isInteger(l) || l < 0 || l >= cfg.numLayers) {
      throw new LoraConfigError(`'layers' has ${l}; the model has layers 0..${cfg.numLayers - 1}`);
    }
  }
  return { ...lora, layers: [...new Set(lora.layers)].sort((a, b) => a - b) };
}

/** The branch scale α/R, or α/√R with rsLoRA. */
export function loraScale(lora: LoraConfig): number {
  return lora.rslora ? lora.alpha / Math.sqrt(lora.rank) : lora.alpha / lora.rank;
}

/** Input and output widths of a projection. */
export function moduleDims(cfg: ModelConfig, module: TargetModule): { in: number; out: number } {
  const d = cfg.hiddenSize, q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
  switch (module) {
    case "q_proj":
      return { in: d, out: q };
    case "k_proj":
    case "v_proj":
      return { in: d, out: kv };
    case "o_proj":
      return { in: q, out: d };
    case "gate_proj":
    case "up_proj":
      return { in: d, out: cfg.intermediateSize };
    case "down_proj":
      return { in: cfg.intermediateSize, out: d };
  }
}

/** Every (layer, module) pair with a branch, layer-major. */
export function loraModules(lora: LoraConfig): { layer: number; module: TargetModule }[] {
  return lora.layers.flatMap((layer) =>
    TARGET_MODULES.filter((m) => lora.targets.includes(m)).map((module) => ({ layer, module }))
  );
}

/** Shapes of every LoRA parameter by name: A [R, in], B [out, R]. */
export function loraShapes(cfg: ModelConfig, lora: LoraConfig): Map<string, [number, number]> {
  const shapes = new Map<string, [number, number]>();
  for (const { layer, module } of loraModules(lora)) {
    const { a, b } = loraNames(layer, module);
    const dims = moduleDims(cfg, module);
    shapes.set(a, [lora.rank, dims.in]);
    shapes.set(b, [dims.out, lora.rank]);
  }
  return shapes;
}

/**
 * Fresh LoRA parameters as PEFT initialises them: A Kaiming-uniform with a = √5 (uniform in ±1/√in), B zero,
 * so the adapted model starts equal to the base. Deterministic for a seed.
 */
export function initLora(cfg: ModelConfig, lora: LoraConfig, seed: number): Record<string, HostTensor> {
  const rng = new Rng(seed);
  const params: Record<string, HostTensor> = {};
  for (const [name, [rows, cols]] of loraShapes(cfg, lora)) {
    const isA = name.endsWith("lora_A.weight");
    const bound = 1 / Math.sqrt(cols);
    const data = isA
      ? Float32Array.from({ length: rows * cols }, () => rng.uniform(-bound, bound))
      : undefined;
    params[name] = hostTensor("float32", [rows, cols], data);
  }
  return params;
}

/**
 * LoRA parameters for tests whose B matrices are nonzero too (a fresh LoRA's B is zero, so it would not change
 * the model's output): A as `initLora` draws it, B uniform in [-range, range].
 *
 * @module
 */

import type { ModelConfig } from "../../src/model/config.ts";
import { initLora, type LoraConfig } from "../../src/model/lora.ts";
import { type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { Rng } from "../../src/util/random.ts";

/** Options of {@link nonzeroLora}: A's seed, B's seed (default seed + 1) and B's range. */
export interface NonzeroLoraOptions {
  readonly seed: number;
  readonly bSeed?: number;
  readonly range: number;
}

/** LoRA parameters with A from `initLora(seed)` and B drawn uniformly from [-range, range]. */
export function nonzeroLora(
  config: ModelConfig,
  lora: LoraConfig,
  { seed, bSeed = seed + 1, range }: NonzeroLoraOptions,
): Record<string, HostTensor> {
  const params = initLora(config, lora, seed);
  const rng = new Rng(bSeed);
  for (const [name, t] of Object.entries(params)) {
    if (!name.endsWith("lora_B.weight")) continue;
    params[name] = hostTensor(
      "float32",
      t.dims,
      Float32Array.from({ length: t.data.length }, () => rng.uniform(-range, range)),
    );
  }
  return params;
}

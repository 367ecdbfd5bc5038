/**
 * Real PEFT adapter folders for the plugin tests, written with `writeAdapter` for the tiny Llama fixture
 * (3 layers): seeded, with nonzero B so every version has its own weights.
 */

import { join } from "node:path";
import { readConfig } from "../../src/model/config.ts";
import { type LoraConfig, type TargetModule, validateLora } from "../../src/model/lora.ts";
import type { Model } from "../../src/model/model.ts";
import { writeAdapter } from "../../src/model/peft.ts";
import { padParams } from "../../src/flexora/export.ts";
import type { AdapterRef } from "../../plugins/types.ts";
import { TINY } from "../cli/run.ts";
import { nonzeroLora } from "../model/random_lora.ts";

/** The tiny model's folder (its config.json gives LoRAX's check the layer count). */
export { TINY };

const tiny = await readConfig(TINY);
const root = await Deno.makeTempDir({ prefix: "flexora-plugins-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
let folders = 0;

/** A fresh folder under the tests' temporary root (not created). */
export function freshPath(label = "dir"): string {
  return join(root, `${label}-${folders++}`);
}

/** Options of {@link makeAdapter}. */
export interface AdapterOptions {
  readonly rank?: number;
  readonly seed?: number;
  /** Layers with LoRA (default: all three, so the folder is complete for LoRAX too). */
  readonly layers?: readonly number[];
  readonly targets?: readonly TargetModule[];
  /** Zero LoRA for the other layers, as `finetune --pad-layers` writes. */
  readonly padLayers?: boolean;
  /** `base_model_name_or_path` (default: the tiny model's folder). */
  readonly baseModel?: string;
  /** Adds the NO_EFFECT marker, which the fakes read as "tensor names do not match the model". */
  readonly noEffect?: boolean;
}

/** Writes an adapter folder and returns its reference under `name`. */
export async function makeAdapter(name: string, options: AdapterOptions = {}): Promise<AdapterRef> {
  const lora: LoraConfig = validateLora(tiny, {
    rank: options.rank ?? 4,
    alpha: 8,
    rslora: false,
    targets: options.targets ?? ["q_proj", "v_proj"],
    layers: options.layers ?? [0, 1, 2],
  });
  const seed = options.seed ?? 1;
  const params = nonzeroLora(tiny, lora, { seed, bSeed: seed + 1000, range: 0.1 });
  // padParams only reads the model's config.
  const written = options.padLayers
    ? padParams({ config: tiny } as Model, lora, params)
    : { config: lora, params };
  const path = freshPath(name);
  await writeAdapter(path, written.config, written.params, {
    baseModel: options.baseModel ?? TINY,
    layersToTransform: lora.layers,
    extraFiles: options.noEffect
      ? { NO_EFFECT: "the fakes treat this adapter's tensors as not matching\n" }
      : {},
  });
  return { name, path, rank: lora.rank, version: `seed-${seed}` };
}

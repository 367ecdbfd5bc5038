/**
 * LoRAX's rule for adapters: a projection that is missing in ANY layer is dropped in ALL layers. An adapter of
 * selected layers only (Flexora's default export) would therefore do nothing on LoRAX; it needs the export with
 * `--pad-layers`, which writes zero LoRA weights for the other layers. This checks the safetensors header for
 * every target projection in every layer before anything is copied or requested.
 *
 * @module
 */

import { join } from "node:path";
import { TARGET_MODULES } from "../../src/model/names.ts";
import type { AdapterFiles } from "../adapter.ts";
import { positiveIntOption } from "../options.ts";
import { AttachError, type ServerConfig } from "../types.ts";

/**
 * The model's number of decoder layers: `options.numLayers`, else `num_hidden_layers` of the `config.json` in
 * the adapter's `base_model_name_or_path` folder. Without either the check cannot be made, which is an error.
 */
export async function layerCount(server: ServerConfig, files: AdapterFiles, what: string): Promise<number> {
  const configured = positiveIntOption(server, "numLayers");
  if (configured !== undefined) return configured;
  if (files.baseModel) {
    try {
      const config = JSON.parse(await Deno.readTextFile(join(files.baseModel, "config.json")));
      const n = config?.num_hidden_layers;
      if (Number.isInteger(n) && n > 0) return n;
    } catch {
      // not a local model folder: fall through
    }
  }
  throw new AttachError(
    `${what}: cannot check that every layer has every projection (LoRAX needs that): the model's layer count ` +
      `is unknown; set 'options.numLayers' for this server, or point 'base_model_name_or_path' ` +
      `(${JSON.stringify(files.baseModel)}) at a model folder with config.json`,
  );
}

/**
 * Projection → the layers among 0..numLayers-1 where it has no lora_A/lora_B pair, for every target projection
 * (those in the weights and the decoder projections named in `target_modules`).
 *
 * @example
 * ```ts
 * import { missingProjections } from "./padding.ts";
 * const files = { config: { r: 8, target_modules: ["q_proj", "v_proj"] }, modules: new Map([[1, new Set(["q_proj"])]]) };
 * const missing = missingProjections(files, 3);
 * if (missing.get("q_proj")?.join() !== "0,2" || missing.get("v_proj")?.join() !== "0,1,2") throw new Error();
 * ```
 */
export function missingProjections(
  files: Pick<AdapterFiles, "config" | "modules">,
  numLayers: number,
): Map<string, number[]> {
  const targets = new Set<string>();
  for (const modules of files.modules.values()) for (const m of modules) targets.add(m);
  const declared = files.config.target_modules;
  if (Array.isArray(declared)) {
    for (const m of declared) {
      if ((TARGET_MODULES as readonly unknown[]).includes(m)) targets.add(m as string);
    }
  }
  const missing = new Map<string, number[]>();
  for (const module of [...targets].sort()) {
    const layers = [...Array(numLayers).keys()].filter((l) => !files.modules.get(l)?.has(module));
    if (layers.length > 0) missing.set(module, layers);
  }
  return missing;
}

/**
 * Throws unless every target projection has LoRA weights in every layer, saying which are missing where and to
 * export with `--pad-layers`.
 */
export async function checkPadded(server: ServerConfig, files: AdapterFiles, what: string): Promise<void> {
  const numLayers = await layerCount(server, files, what);
  const missing = missingProjections(files, numLayers);
  if (missing.size === 0) return;
  const lacks = [...missing].map(([m, layers]) => `${m} in layers ${layers.join(", ")}`).join("; ");
  throw new AttachError(
    `${what}: ${files.weightsFile} lacks ${lacks} (of ${numLayers}); LoRAX drops a projection that is missing in ` +
      `any layer from every layer, so this adapter would do nothing there: export it with --pad-layers ` +
      `(zero LoRA weights for the other layers)`,
  );
}

/**
 * Writing a trained adapter in PEFT format, with Flexora's record beside it.
 *
 * `adapter_config.json` names the selected layers in `layers_to_transform` and never uses rank or alpha patterns
 * (servers ignore them); `adapter_model.safetensors` holds A [R, in] and B [out, R] for the selected layers only,
 * or, with `padLayers`, zero A and B for the other layers too (LoRAX and TGI drop a projection that is missing in
 * any layer). `flexora.json` records the gates, the selection, metrics per stage, the configuration, the seed and
 * hashes of the data and the model. The folder appears only when complete (written aside, then renamed).
 *
 * @module
 */

import { basename } from "node:path";
import { encodeHex } from "../util/hex.ts";
import { type LoraConfig, loraShapes, validateLora } from "../model/lora.ts";
import type { Model } from "../model/model.ts";
import { writeAdapter } from "../model/peft.ts";
import { type HostTensor, hostTensor } from "../runtime/session.ts";
import { FLEXORA_FILE, flexoraJsonText, type FlexoraReport } from "./flexora_json.ts";

/** Options of {@link exportPeft}. */
export interface ExportOptions {
  /** Write zero A/B for layers without LoRA, so every layer has every target projection. */
  padLayers?: boolean;
  /** `base_model_name_or_path` (default: the model directory). */
  baseModel?: string;
}

/** A hash identifying the model: sha-256 over config.json and each weight file's name, size and header. */
export async function modelHash(model: Model): Promise<string> {
  const parts: Uint8Array[] = [await Deno.readFile(`${model.dir}/config.json`)];
  for (const file of model.weights.checkpoint.files) {
    const size = (await Deno.stat(file)).size;
    const head = new Uint8Array(8);
    using f = await Deno.open(file);
    await f.read(head);
    const n = Number(new DataView(head.buffer).getBigUint64(0, true));
    const header = new Uint8Array(n);
    await f.read(header);
    parts.push(new TextEncoder().encode(`${basename(file)}:${size}:`), header);
  }
  const all = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, at), at += p.length;
  return encodeHex(await crypto.subtle.digest("SHA-256", all));
}

/** Parameters of `config`'s layers plus zeros for every other layer's target projections. */
export function padParams(model: Model, config: LoraConfig, params: Readonly<Record<string, HostTensor>>): {
  config: LoraConfig;
  params: Record<string, HostTensor>;
} {
  const all = validateLora(model.config, { ...config, layers: [...Array(model.config.numLayers).keys()] });
  const out: Record<string, HostTensor> = {};
  for (const [name, shape] of loraShapes(model.config, all)) {
    out[name] = params[name] ?? hostTensor("float32", shape);
  }
  return { config: all, params: out };
}

/**
 * Writes the adapter to `dir` (which must not exist).
 *
 * @example
 * ```ts
 * import { initLora, validateLora } from "../model/lora.ts";
 * import { loadModel } from "../model/model.ts";
 * import { readAdapter } from "../model/peft.ts";
 * import { exportPeft } from "./export.ts";
 * const model = await loadModel(new URL("../../fixtures/tiny-llama", import.meta.url).pathname);
 * const config = validateLora(model.config, { rank: 4, alpha: 8, rslora: false, targets: ["q_proj"], layers: [1] });
 * const dir = (await Deno.makeTempDir()) + "/adapter";
 * await exportPeft(dir, model, { config, params: initLora(model.config, config, 0) }, {
 *   method: "lora", selectedLayers: [1], metrics: {}, options: {}, seed: 0, dataHash: "",
 * });
 * if ((await readAdapter(dir, model.config)).config.layers.join() !== "1") throw new Error("round trip");
 * ```
 */
export async function exportPeft(
  dir: string,
  model: Model,
  adapter: { readonly config: LoraConfig; readonly params: Readonly<Record<string, HostTensor>> },
  report: FlexoraReport,
  options: ExportOptions = {},
): Promise<void> {
  const { config, params } = options.padLayers ? padParams(model, adapter.config, adapter.params) : adapter;
  const flexora = flexoraJsonText(report, {
    model: { path: model.dir, hash: await modelHash(model) },
    padded: options.padLayers === true,
    lora: { rank: adapter.config.rank, alpha: adapter.config.alpha, rslora: adapter.config.rslora },
  });
  await writeAdapter(dir, config, params, {
    baseModel: options.baseModel ?? model.dir,
    layersToTransform: report.selectedLayers,
    extraFiles: { [FLEXORA_FILE]: flexora },
  });
}

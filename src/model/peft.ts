/**
 * PEFT LoRA adapters on disk: `adapter_config.json` + `adapter_model.safetensors`.
 *
 * In-memory parameter names are Hugging Face module paths (`model.layers.3.self_attn.q_proj.lora_A.weight`);
 * PEFT saves them under `base_model.model.`. {@link toPeftKey} and {@link fromPeftKey} are the one mapping
 * between the two, used for reading and writing.
 *
 * @module
 */

import { join } from "node:path";
import { type HostTensor, hostTensor } from "../runtime/session.ts";
import type { ModelConfig } from "./config.ts";
import { type LoraConfig, loraShapes, validateLora } from "./lora.ts";
import { fromPeftKey, TARGET_MODULES, type TargetModule, toPeftKey } from "./names.ts";

export { fromPeftKey, toPeftKey } from "./names.ts";
import { readHeader, readTensorF32, type TensorInfo, writeSafetensors } from "./safetensors.ts";

/** A LoRA adapter read from disk. */
export interface Adapter {
  readonly dir: string;
  readonly config: LoraConfig;
  /** Parameters by in-memory name, float32. */
  readonly params: Record<string, HostTensor>;
  /** `base_model_name_or_path` from the config, when given. */
  readonly baseModel: string | null;
}

/** Thrown for an adapter that cannot be read or does not fit the model; the message names the file. */
export class AdapterError extends Error {
  override name = "AdapterError";
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new AdapterError(`${file}: cannot read the adapter config (${(e as Error).message})`);
  }
  try {
    const json = JSON.parse(text);
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new Error("not a JSON object");
    }
    return json;
  } catch (e) {
    throw new AdapterError(`${file}: not a valid adapter config (${(e as Error).message})`);
  }
}

/**
 * Reads a PEFT LoRA adapter and checks it against the model: every tensor must be a LoRA A or B of a decoder
 * projection the model has, with the shape the model and the adapter's rank imply.
 */
export async function readAdapter(dir: string, cfg: ModelConfig): Promise<Adapter> {
  const configFile = join(dir, "adapter_config.json");
  const json = await readJson(configFile);
  if (json.peft_type !== undefined && json.peft_type !== "LORA") {
    throw new AdapterError(
      `${configFile}: 'peft_type' must be "LORA", got ${JSON.stringify(json.peft_type)}`,
    );
  }
  for (const field of ["rank_pattern", "alpha_pattern"]) {
    const v = json[field];
    if (v && typeof v === "object" && Object.keys(v).length > 0) {
      throw new AdapterError(
        `${configFile}: '${field}' is not supported (per-module ranks or alphas), got ${JSON.stringify(v)}`,
      );
    }
  }
  if (json.use_dora === true) {
    throw new AdapterError(`${configFile}: DoRA adapters ('use_dora': true) are not supported`);
  }
  const rank = json.r, alpha = json.lora_alpha ?? rank;
  if (typeof rank !== "number" || typeof alpha !== "number") {
    throw new AdapterError(
      `${configFile}: 'r' and 'lora_alpha' must be numbers, got ${
        JSON.stringify({ r: rank, lora_alpha: alpha })
      }`,
    );
  }
  const file = join(dir, "adapter_model.safetensors");
  const header = await readHeader(file).catch((e) => {
    throw new AdapterError(`${file}: cannot read the adapter weights (${(e as Error).message})`);
  });
  const layers = new Set<number>(), targets = new Set<TargetModule>();
  const found = new Map<string, TensorInfo>();
  for (const info of header.tensors) {
    const parsed = fromPeftKey(info.name);
    if (!parsed) {
      throw new AdapterError(`${file}: tensor '${info.name}' is not a LoRA weight of a decoder layer`);
    }
    if (!TARGET_MODULES.includes(parsed.module as TargetModule)) {
      throw new AdapterError(
        `${file}: tensor '${info.name}' targets '${parsed.module}', which the model lacks`,
      );
    }
    if (parsed.layer >= cfg.numLayers) {
      throw new AdapterError(
        `${file}: tensor '${info.name}' is for layer ${parsed.layer}; the model has layers 0..${
          cfg.numLayers - 1
        }`,
      );
    }
    layers.add(parsed.layer);
    targets.add(parsed.module as TargetModule);
    found.set(parsed.name, info);
  }
  if (found.size === 0) throw new AdapterError(`${file}: holds no LoRA tensors`);
  let config: LoraConfig;
  try {
    config = validateLora(cfg, {
      rank,
      alpha,
      rslora: json.use_rslora === true,
      targets: TARGET_MODULES.filter((m) => targets.has(m)),
      layers: [...layers],
    });
  } catch (e) {
    throw new AdapterError(`${configFile}: ${(e as Error).message}`);
  }
  const params: Record<string, HostTensor> = {};
  for (const [name, shape] of loraShapes(cfg, config)) {
    const info = found.get(name);
    if (!info) {
      throw new AdapterError(
        `${file}: '${toPeftKey(name)}' is missing (other modules of that layer have LoRA)`,
      );
    }
    const key = info.name;
    if (info.shape.length !== 2 || info.shape[0] !== shape[0] || info.shape[1] !== shape[1]) {
      throw new AdapterError(
        `${file}: tensor '${key}' has shape [${info.shape}], the model needs [${shape}] for rank ${rank}`,
      );
    }
    const data = await readTensorF32(info).catch((e) => {
      throw new AdapterError(`${file}: cannot read tensor '${key}' (${(e as Error).message})`);
    });
    params[name] = hostTensor("float32", shape, data);
  }
  return {
    dir,
    config,
    params,
    baseModel: typeof json.base_model_name_or_path === "string" ? json.base_model_name_or_path : null,
  };
}

/** Options of {@link writeAdapter}. */
export interface WriteAdapterOptions {
  /** `base_model_name_or_path` (default: null). */
  baseModel?: string | null;
  /** Extra fields merged into `adapter_config.json` (such as `layers_to_transform`). */
  extraConfig?: Record<string, unknown>;
  /** Further files to write into the adapter folder, by name (such as `flexora.json`). */
  extraFiles?: Record<string, string>;
}

/**
 * Writes a PEFT LoRA adapter atomically: both files go to a temporary sibling folder that is renamed to `dir`
 * once complete, so a reader never sees half an adapter. `dir` must not exist yet.
 */
export async function writeAdapter(
  dir: string,
  config: LoraConfig,
  params: Readonly<Record<string, HostTensor>>,
  options: WriteAdapterOptions = {},
): Promise<void> {
  try {
    await Deno.stat(dir);
    throw new AdapterError(`${dir}: already exists; adapters are written to new folders`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const tmp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(tmp, { recursive: true });
  try {
    const tensors = Object.entries(params).map(([name, t]) => ({
      name: toPeftKey(name),
      dtype: "F32" as const,
      shape: t.dims,
      data: t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array),
    }));
    await writeSafetensors(join(tmp, "adapter_model.safetensors"), tensors, { format: "pt" });
    const json = {
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      base_model_name_or_path: options.baseModel ?? null,
      r: config.rank,
      lora_alpha: config.alpha,
      use_rslora: config.rslora,
      target_modules: [...config.targets],
      lora_dropout: 0,
      bias: "none",
      ...options.extraConfig,
    };
    await Deno.writeTextFile(join(tmp, "adapter_config.json"), JSON.stringify(json, null, 2) + "\n");
    for (const [name, text] of Object.entries(options.extraFiles ?? {})) {
      await Deno.writeTextFile(join(tmp, name), text);
    }
    await Deno.rename(tmp, dir);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

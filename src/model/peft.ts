/**
 * PEFT LoRA adapters on disk: `adapter_config.json` + `adapter_model.safetensors`. This module owns both files:
 * every reader of an adapter folder (the embedded server, the plugins, the sidecar's job list) goes through it.
 *
 * In-memory parameter names are Hugging Face module paths (`model.layers.3.self_attn.q_proj.lora_A.weight`);
 * PEFT saves them under `base_model.model.`. {@link toPeftKey} and {@link fromPeftKey} are the one mapping
 * between the two, used for reading and writing.
 *
 * @module
 */

import { join } from "node:path";
import { z } from "zod";
import { type HostTensor, hostTensor } from "../runtime/session.ts";
import { jsonText, readJsonFile } from "../util/json_file.ts";
import type { ModelConfig } from "./config.ts";
import { type LoraConfig, loraShapes, validateLora } from "./lora.ts";
import { fromPeftKey, TARGET_MODULES, type TargetModule, toPeftKey } from "./names.ts";
import {
  readHeader,
  readTensorF32,
  type SafetensorsHeader,
  type TensorInfo,
  writeSafetensors,
} from "./safetensors.ts";

export { fromPeftKey, toPeftKey } from "./names.ts";

/** The two files of a PEFT LoRA adapter folder. */
export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

/** Thrown for an adapter that cannot be read or does not fit the model; the message names the file. */
export class AdapterError extends Error {
  override name = "AdapterError";
}

const positiveInt = "must be a positive integer";
const patterns = z.record(z.string(), z.unknown(), { error: "must be an object" }).nullable().optional();
const names = z.union([z.array(z.string()), z.string()], { error: "must be a name or a list of names" });

/**
 * `adapter_config.json` as PEFT writes it: the fields flexora reads, typed; any other field is kept as is.
 */
export interface AdapterConfigJson {
  readonly peft_type?: "LORA";
  readonly task_type?: string | null;
  readonly base_model_name_or_path?: string | null;
  /** The rank. */
  readonly r: number;
  readonly lora_alpha?: number;
  readonly use_rslora?: boolean;
  readonly use_dora?: boolean;
  readonly rank_pattern?: Readonly<Record<string, unknown>> | null;
  readonly alpha_pattern?: Readonly<Record<string, unknown>> | null;
  readonly target_modules?: string | string[] | null;
  readonly layers_to_transform?: number | number[] | null;
  readonly layers_pattern?: string | string[] | null;
  readonly [field: string]: unknown;
}

/**
 * Reads an {@link AdapterConfigJson}: the fields every reader needs are checked; the embedded server further
 * refuses rank and alpha patterns and DoRA ({@link readAdapter}).
 */
const AdapterConfigSchema: z.ZodType<AdapterConfigJson> = z.looseObject({
  peft_type: z.literal("LORA", { error: 'must be "LORA"' }).optional(),
  task_type: z.string({ error: "must be a string" }).nullable().optional(),
  base_model_name_or_path: z.string({ error: "must be a string or null" }).nullable().optional(),
  r: z.number({ error: positiveInt }).int({ error: positiveInt }).positive({ error: positiveInt }),
  lora_alpha: z.number({ error: "must be a number" }).optional(),
  use_rslora: z.boolean({ error: "must be true or false" }).optional(),
  use_dora: z.boolean({ error: "must be true or false" }).optional(),
  rank_pattern: patterns,
  alpha_pattern: patterns,
  target_modules: names.nullable().optional(),
  layers_to_transform: z.union([z.array(z.number().int()), z.number().int()], {
    error: "must be a layer index or a list of them",
  }).nullable().optional(),
  layers_pattern: names.nullable().optional(),
});

/** Reads and checks `<dir>/adapter_config.json`; an {@link AdapterError} names the file and the field. */
export async function readAdapterConfig(dir: string): Promise<AdapterConfigJson> {
  return await readJsonFile(join(dir, ADAPTER_CONFIG_FILE), AdapterConfigSchema, {
    what: "adapter config",
    error: (m) => new AdapterError(m),
  });
}

/** Whether `dir` holds an `adapter_config.json` file (a folder that claims to be an adapter). */
export async function isAdapterDir(dir: string): Promise<boolean> {
  return await Deno.stat(join(dir, ADAPTER_CONFIG_FILE)).then((s) => s.isFile, () => false);
}

/** The `adapter_config.json` {@link writeAdapter} writes for `config`. */
export function adapterConfigJson(config: LoraConfig, options: WriteAdapterOptions = {}): AdapterConfigJson {
  return {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: options.baseModel ?? null,
    r: config.rank,
    lora_alpha: config.alpha,
    use_rslora: config.rslora,
    target_modules: [...config.targets],
    lora_dropout: 0,
    bias: "none",
    ...(options.layersToTransform &&
      { layers_to_transform: [...options.layersToTransform], layers_pattern: "layers" }),
  };
}

/** A tensor of `adapter_model.safetensors` with its saved key parsed. */
export interface AdapterTensor {
  readonly info: TensorInfo;
  /** Name, layer, module and matrix; null when the key is not a LoRA weight of a decoder layer. */
  readonly lora: ReturnType<typeof fromPeftKey>;
}

/** The weights file of an adapter: its header, and each tensor's key parsed ({@link fromPeftKey}). */
export interface AdapterWeights {
  readonly file: string;
  readonly header: SafetensorsHeader;
  readonly tensors: readonly AdapterTensor[];
  /** Decoder layer → projections that have both lora_A and lora_B. */
  readonly modules: ReadonlyMap<number, ReadonlySet<string>>;
}

/** Reads the header of `<dir>/adapter_model.safetensors` and parses its tensor keys; errors name the file. */
export async function readAdapterWeights(dir: string): Promise<AdapterWeights> {
  const file = join(dir, ADAPTER_WEIGHTS_FILE);
  const header = await readHeader(file).catch((e) => {
    throw new AdapterError(`${file}: cannot read the adapter weights (${(e as Error).message})`);
  });
  const tensors = header.tensors.map((info) => ({ info, lora: fromPeftKey(info.name) }));
  const halves = new Map<string, { layer: number; module: string; matrices: Set<string> }>();
  for (const { lora } of tensors) {
    if (!lora) continue;
    const id = `${lora.layer}:${lora.module}`;
    const entry = halves.get(id) ?? { layer: lora.layer, module: lora.module, matrices: new Set<string>() };
    halves.set(id, entry);
    entry.matrices.add(lora.matrix);
  }
  const modules = new Map<number, Set<string>>();
  for (const { layer, module, matrices } of halves.values()) {
    if (matrices.size === 2) modules.set(layer, (modules.get(layer) ?? new Set()).add(module));
  }
  return { file, header, tensors, modules };
}

/** A LoRA adapter read from disk. */
export interface Adapter {
  readonly dir: string;
  readonly config: LoraConfig;
  /** Parameters by in-memory name, float32. */
  readonly params: Record<string, HostTensor>;
  /** `base_model_name_or_path` from the config, when given. */
  readonly baseModel: string | null;
}

/**
 * Reads a PEFT LoRA adapter and checks it against the model: every tensor must be a LoRA A or B of a decoder
 * projection the model has, with the shape the model and the adapter's rank imply.
 */
export async function readAdapter(dir: string, cfg: ModelConfig): Promise<Adapter> {
  const json = await readAdapterConfig(dir);
  const configFile = join(dir, ADAPTER_CONFIG_FILE);
  for (const field of ["rank_pattern", "alpha_pattern"] as const) {
    const v = json[field];
    if (v && Object.keys(v).length > 0) {
      throw new AdapterError(
        `${configFile}: '${field}' is not supported (per-module ranks or alphas), got ${JSON.stringify(v)}`,
      );
    }
  }
  if (json.use_dora === true) {
    throw new AdapterError(`${configFile}: DoRA adapters ('use_dora': true) are not supported`);
  }
  const rank = json.r, alpha = json.lora_alpha ?? rank;
  const { file, tensors } = await readAdapterWeights(dir);
  const layers = new Set<number>(), targets = new Set<TargetModule>();
  const found = new Map<string, TensorInfo>();
  for (const { info, lora: parsed } of tensors) {
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
    baseModel: json.base_model_name_or_path ?? null,
  };
}

/** Options of {@link writeAdapter}. */
export interface WriteAdapterOptions {
  /** `base_model_name_or_path` (default: null). */
  baseModel?: string | null;
  /** The layers the adapter holds, written as `layers_to_transform` (with `layers_pattern` "layers"). */
  layersToTransform?: readonly number[];
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
    await writeSafetensors(join(tmp, ADAPTER_WEIGHTS_FILE), tensors, { format: "pt" });
    await Deno.writeTextFile(join(tmp, ADAPTER_CONFIG_FILE), jsonText(adapterConfigJson(config, options)));
    for (const [name, text] of Object.entries(options.extraFiles ?? {})) {
      await Deno.writeTextFile(join(tmp, name), text);
    }
    await Deno.rename(tmp, dir);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

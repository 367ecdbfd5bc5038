/**
 * The adapters a server has loaded, by `lora_name`. A loaded adapter is an immutable object: a request captures
 * the one it starts with, and loading in place swaps the registry's entry without touching what running requests
 * hold.
 *
 * Errors are the ones vLLM's `/v1/load_lora_adapter` answers with: 404 when there is no adapter at the path
 * (`Loading lora NAME failed: No adapter found for PATH`), 400 when the rank exceeds the server's limit
 * (`LoRA rank R is greater than max_lora_rank M.`) or the adapter does not fit the model (the reader's message).
 *
 * @module
 */

import { resolve, sep } from "node:path";
import type { ModelConfig } from "../../model/config.ts";
import { type LoraConfig, loraScale } from "../../model/lora.ts";
import { isAdapterDir, readAdapter } from "../../model/peft.ts";
import { type HostTensor, hostTensor } from "../../runtime/session.ts";
import { ApiError } from "./errors.ts";
import { configKey } from "./sessions.ts";

/** An adapter ready to serve. Frozen: replacing one means registering a new object. */
export interface LoadedAdapter {
  /** `lora_name`: what requests put in `model`. */
  readonly name: string;
  /** `lora_path` as the load request gave it. */
  readonly path: string;
  /** The adapter's own configuration (rank, alpha, targets, layers). */
  readonly config: LoraConfig;
  /** Its session key ({@link configKey}). */
  readonly key: string;
  /** Step-graph inputs: `lora_A` as saved, `lora_B` multiplied by the adapter's scale (sessions use scale 1). */
  readonly inputs: Readonly<Record<string, HostTensor>>;
}

/** Limits on what may be loaded. */
export interface RegistryOptions {
  /** Largest rank accepted (vLLM's `--max-lora-rank`). */
  readonly maxLoraRank: number;
  /** When given, `lora_path` must lie inside one of these folders (after resolving symlinks). */
  readonly allowedAdapterRoots?: readonly string[];
}

/** Whether `path` is `root` or lies inside it. */
function isInside(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** The real path of `path`, or its absolute form when it does not exist. */
async function realPath(path: string): Promise<string> {
  return await Deno.realPath(path).catch(() => resolve(path));
}

/** Loaded adapters by name, in the order they were first loaded. */
export class AdapterRegistry {
  readonly #adapters = new Map<string, LoadedAdapter>();

  constructor(readonly modelConfig: ModelConfig, readonly options: RegistryOptions) {}

  get(name: string): LoadedAdapter | undefined {
    return this.#adapters.get(name);
  }

  list(): LoadedAdapter[] {
    return [...this.#adapters.values()];
  }

  /** Whether some loaded adapter runs on the session `key`. */
  usesKey(key: string): boolean {
    return this.list().some((a) => a.key === key);
  }

  /** Reads and checks the adapter at `path` for `name`, without registering it. */
  async read(name: string, path: string): Promise<LoadedAdapter> {
    const dir = resolve(path);
    const roots = this.options.allowedAdapterRoots;
    if (roots) {
      const real = await realPath(dir);
      const allowed = await Promise.all(roots.map(realPath));
      if (!allowed.some((root) => isInside(real, root))) {
        throw ApiError.badRequest(
          `Cannot load adapter '${name}': 'lora_path' ${path} lies outside the allowed adapter roots (${
            roots.join(", ")
          })`,
          "lora_path",
        );
      }
    }
    if (!(await isAdapterDir(dir))) {
      throw ApiError.notFound(`Loading lora ${name} failed: No adapter found for ${path}`);
    }
    let config: LoraConfig, params: Record<string, HostTensor>;
    try {
      ({ config, params } = await readAdapter(dir, this.modelConfig));
    } catch (e) {
      throw ApiError.badRequest(`Loading lora ${name} failed: ${(e as Error).message}`);
    }
    if (config.rank > this.options.maxLoraRank) {
      throw ApiError.badRequest(
        `LoRA rank ${config.rank} is greater than max_lora_rank ${this.options.maxLoraRank}.`,
      );
    }
    return Object.freeze({ name, path, config, key: configKey(config), inputs: foldScale(config, params) });
  }

  /**
   * Registers `adapter` under its name. Without `inplace`, a name already loaded is a 400 (checked again here, as
   * two loads of one name may have been read at the same time). Returns the adapter it replaced, if any.
   */
  add(adapter: LoadedAdapter, inplace: boolean): LoadedAdapter | undefined {
    const previous = this.#adapters.get(adapter.name);
    if (previous && !inplace) throw alreadyLoaded(adapter.name);
    this.#adapters.set(adapter.name, adapter); // a Map keeps the first position of a replaced key
    return previous;
  }

  /** Removes the adapter `name`; 404 when it is not loaded. */
  remove(name: string): LoadedAdapter {
    const adapter = this.#adapters.get(name);
    if (!adapter) throw ApiError.notFound(`The lora adapter '${name}' cannot be found.`);
    this.#adapters.delete(name);
    return adapter;
  }
}

/** vLLM's answer to loading a name twice without `load_inplace`. */
export function alreadyLoaded(name: string): ApiError {
  return ApiError.invalidInput(
    `The lora adapter '${name}' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.`,
  );
}

/** Multiplies every `lora_B` by the adapter's scale, so the adapter runs on a session built with scale 1. */
function foldScale(
  config: LoraConfig,
  params: Record<string, HostTensor>,
): Readonly<Record<string, HostTensor>> {
  const scale = loraScale(config);
  const inputs: Record<string, HostTensor> = {};
  for (const [name, t] of Object.entries(params)) {
    inputs[name] = scale === 1 || !name.endsWith(".lora_B.weight")
      ? t
      : hostTensor("float32", t.dims, Float32Array.from(t.data as Float32Array, (x) => x * scale));
  }
  return Object.freeze(inputs);
}

/**
 * What every plugin checks in an adapter folder before it calls a server: a valid name, a PEFT LoRA config, a
 * readable safetensors header, a rank that matches the reference and fits the server's limit
 * (`options.maxLoraRank`, when configured). A failure is an {@link AttachError} and no request is made.
 *
 * @module
 */

import { join } from "node:path";
import { isSafeName, nameProblem } from "../src/util/safe_name.ts";
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type AdapterConfigJson,
  readAdapterConfig,
  readAdapterWeights,
} from "../src/model/peft.ts";
import type { SafetensorsHeader } from "../src/model/safetensors.ts";
import { attaching } from "./errors.ts";
import { positiveIntOption } from "./options.ts";
import { type AdapterRef, AttachError, type ServerConfig } from "./types.ts";

/** The files of a PEFT LoRA adapter folder (named by their owner, src/model/peft.ts). */
export const CONFIG_FILE = ADAPTER_CONFIG_FILE;
export const WEIGHTS_FILE = ADAPTER_WEIGHTS_FILE;

/** An adapter folder as read before attaching. */
export interface AdapterFiles {
  readonly configFile: string;
  readonly weightsFile: string;
  /** `adapter_config.json` as written (checked by {@link readAdapterConfig}). */
  readonly config: AdapterConfigJson;
  /** `r`. */
  readonly rank: number;
  /** `base_model_name_or_path`, or null. */
  readonly baseModel: string | null;
  readonly header: SafetensorsHeader;
  /** Decoder layer → projections that have both lora_A and lora_B in the weights. */
  readonly modules: ReadonlyMap<number, ReadonlySet<string>>;
}

/**
 * Checks an adapter name against the one name rule ({@link isSafeName}: a safe single path segment, never `.`
 * or `..`); `what` starts the error message.
 *
 * @example
 * ```ts
 * import { checkName } from "./adapter.ts";
 * checkName("Cannot attach", "sql-v2");
 * ```
 */
export function checkName(what: string, name: string): void {
  if (!isSafeName(name)) throw new AttachError(`${what}: an adapter name ${nameProblem(name)}`);
}

/**
 * Reads and checks the adapter folder (see the module doc); the server is not contacted.
 *
 * @example
 * ```ts
 * import { inspectAdapter } from "./adapter.ts";
 * import { AttachError } from "./types.ts";
 * const server = { name: "s", kind: "vllm" as const, url: "http://127.0.0.1:1" };
 * const missing = await inspectAdapter(server, { name: "a", path: await Deno.makeTempDir(), rank: 8 })
 *   .catch((e) => e);
 * if (!(missing instanceof AttachError) || !missing.message.includes("adapter_config.json")) throw missing;
 * ```
 */
export async function inspectAdapter(server: ServerConfig, adapter: AdapterRef): Promise<AdapterFiles> {
  checkName(attaching(server, adapter.name), adapter.name);
  const fail = (problem: string) => new AttachError(`${attaching(server, adapter.name)}: ${problem}`);
  const configFile = join(adapter.path, CONFIG_FILE);
  const config = await readAdapterConfig(adapter.path).catch((e) => {
    throw fail((e as Error).message);
  });
  const rank = config.r;
  if (rank !== adapter.rank) {
    throw fail(`${configFile} has rank ${rank}, but the adapter was given as rank ${adapter.rank}`);
  }
  const limit = positiveIntOption(server, "maxLoraRank");
  if (limit !== undefined && rank > limit) {
    throw fail(
      `the adapter's rank ${rank} is above the server's maximum LoRA rank ${limit} (options.maxLoraRank); ` +
        `train with rank ${limit} or less, or restart the server with a larger --max-lora-rank`,
    );
  }
  const weights = await readAdapterWeights(adapter.path).catch((e) => {
    throw fail((e as Error).message);
  });
  const { file: weightsFile, header, modules } = weights;
  const baseModel = config.base_model_name_or_path ?? null;
  return { configFile, weightsFile, config, rank, baseModel, header, modules };
}

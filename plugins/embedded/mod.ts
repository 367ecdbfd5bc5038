/**
 * flexora's embedded inference server, which reproduces vLLM's LoRA routes (`/v1/load_lora_adapter`,
 * `/v1/unload_lora_adapter`, `/v1/models`, `/v1/completions`): the vLLM plugin under the kind "embedded".
 *
 * @module
 */

import type { ServerPlugin } from "../types.ts";
import { vllmLike } from "../vllm/mod.ts";

/**
 * The embedded server's plugin.
 *
 * @example
 * ```ts
 * import { embeddedPlugin } from "./mod.ts";
 * if (embeddedPlugin.kind !== "embedded") throw new Error("kind");
 * ```
 */
export const embeddedPlugin: ServerPlugin = vllmLike("embedded");

/**
 * The server plugins: one per {@link ServerKind}, in one explicit table, plus the contract they implement.
 *
 * | kind       | attach                                           | list                                                |
 * | ---------- | ------------------------------------------------ | --------------------------------------------------- |
 * | `vllm`     | `POST /v1/load_lora_adapter`, or a resolver copy | `GET /v1/models`                                    |
 * | `embedded` | as vLLM (flexora's server has vLLM's routes)     | `GET /v1/models`                                    |
 * | `sglang`   | `POST /load_lora_adapter`                        | `GET /v1/models`, or last `loaded_adapters` checked |
 * | `lorax`    | copy into `adapterDir` (used per request)        | folders in `adapterDir`                             |
 * | `llamacpp` | scale of a `--lora` adapter preloaded at start   | adapters with a nonzero scale                       |
 * | `ollama`   | blobs + `POST /api/create` (base + adapter)      | `GET /api/tags`                                     |
 *
 * A plugin always speaks to one URL: the sidecar fans out over a server's replicas and keeps attachments true
 * on each ({@link ../src/serve/reconcile/mod.ts}).
 *
 * @module
 */

import { embeddedPlugin } from "./embedded/mod.ts";
import { llamacppPlugin } from "./llamacpp/mod.ts";
import { loraxPlugin } from "./lorax/mod.ts";
import { ollamaPlugin } from "./ollama/mod.ts";
import { sglangPlugin } from "./sglang/mod.ts";
import type { ServerKind, ServerPlugin } from "./types.ts";
import { vllmPlugin } from "./vllm/mod.ts";

export * from "./types.ts";
export { ServerError } from "./http.ts";

/**
 * Every plugin by kind; a kind without a plugin is a type error.
 *
 * @example
 * ```ts
 * import { PLUGINS } from "./mod.ts";
 * for (const [kind, plugin] of Object.entries(PLUGINS)) if (plugin.kind !== kind) throw new Error(kind);
 * ```
 */
export const PLUGINS: { readonly [K in ServerKind]: ServerPlugin } = {
  vllm: vllmPlugin,
  embedded: embeddedPlugin,
  sglang: sglangPlugin(),
  lorax: loraxPlugin,
  llamacpp: llamacppPlugin,
  ollama: ollamaPlugin,
};

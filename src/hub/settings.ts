/**
 * Where models come from: the Hub endpoint, the token, the cache folder and offline mode, read from the standard
 * Hugging Face environment variables in one place.
 *
 * @module
 */

import { join } from "node:path";

/** How the Hub is reached and where its files are kept. */
export interface HubSettings {
  /** Base URL of the Hub (`HF_ENDPOINT`, default `https://huggingface.co`), without a trailing slash. */
  readonly endpoint: string;
  /** Access token (`HF_TOKEN`), sent as a bearer token to the endpoint's origin only. */
  readonly token?: string;
  /**
   * The cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
   * `~/.cache/huggingface/hub`): the same folder huggingface_hub and transformers use.
   */
  readonly cacheDir: string;
  /** `HF_HUB_OFFLINE=1`: never touch the network, read the cache only. */
  readonly offline: boolean;
}

/** An environment to read: `Deno.env.get` by default; tests pass a record. */
export type Env = (name: string) => string | undefined;

function processEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // without --allow-env the defaults apply
  }
}

const TRUE = ["1", "true", "yes", "on"];

/**
 * The settings the environment gives, with huggingface_hub's defaults and precedence.
 *
 * @example
 * ```ts
 * import { hubSettingsFromEnv } from "./settings.ts";
 * const env: Record<string, string> = { HF_HOME: "/data/hf", HF_HUB_OFFLINE: "1" };
 * const s = hubSettingsFromEnv((k) => env[k]);
 * if (s.cacheDir !== "/data/hf/hub" || !s.offline) throw new Error("HF_HOME/hub, offline");
 * if (s.endpoint !== "https://huggingface.co") throw new Error("the public Hub by default");
 * ```
 */
export function hubSettingsFromEnv(env: Env = processEnv): HubSettings {
  const home = env("HOME") ?? env("USERPROFILE") ?? ".";
  const cacheHome = env("XDG_CACHE_HOME") || join(home, ".cache");
  const hfHome = env("HF_HOME") || join(cacheHome, "huggingface");
  const token = env("HF_TOKEN") || env("HUGGING_FACE_HUB_TOKEN") || undefined;
  return {
    endpoint: (env("HF_ENDPOINT") || "https://huggingface.co").replace(/\/+$/, ""),
    token,
    cacheDir: env("HF_HUB_CACHE") || env("HUGGINGFACE_HUB_CACHE") || join(hfHome, "hub"),
    offline: TRUE.includes((env("HF_HUB_OFFLINE") ?? "").toLowerCase()),
  };
}

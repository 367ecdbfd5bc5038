/**
 * vLLM's filesystem resolver mode (`options.resolverDir`, the server's `VLLM_LORA_RESOLVER_CACHE_DIR`): a request
 * naming an unknown model `<name>` makes vLLM load `<resolverDir>/<name>/`, provided its `adapter_config.json`
 * has `peft_type` "LORA" and `base_model_name_or_path` equal to the served model. The folder is copied in
 * atomically; a new version is swapped in and the old one unloaded, so the next request resolves the new copy.
 *
 * @module
 */

import { join } from "node:path";
import type { AdapterFiles } from "../adapter.ts";
import { checkName } from "../adapter.ts";
import { attaching, detaching, failingAs } from "../errors.ts";
import type { ServerClient } from "../http.ts";
import { installCopy, removeFolder } from "../files.ts";
import { unloadAdapter } from "./api.ts";
import { type AdapterRef, AttachError, type ServerConfig } from "../types.ts";

/** Where the resolver finds an adapter: `<resolverDir>/<name>`. */
export function resolverPath(resolverDir: string, name: string): string {
  return join(resolverDir, name);
}

/** Checks the adapter against the resolver's rules, copies it in, unloads a previous version; returns its path. */
export async function installInResolverDir(
  server: ServerConfig,
  adapter: AdapterRef,
  files: AdapterFiles,
  resolverDir: string,
  client: ServerClient,
): Promise<string> {
  const what = attaching(server, adapter.name);
  if (!server.baseModel) {
    throw new AttachError(
      `${what}: resolver mode needs 'baseModel', the served model vLLM's resolver compares base_model_name_or_path with`,
    );
  }
  if (files.config.peft_type !== "LORA") {
    throw new AttachError(
      `${what}: ${files.configFile}: vLLM's resolver loads only 'peft_type' "LORA", got ${
        JSON.stringify(files.config.peft_type)
      }`,
    );
  }
  if (files.baseModel !== server.baseModel) {
    throw new AttachError(
      `${what}: ${files.configFile}: 'base_model_name_or_path' is ${
        JSON.stringify(files.baseModel)
      }, but the ` +
        `server serves ${
          JSON.stringify(server.baseModel)
        }; vLLM's resolver only loads adapters of its own base model`,
    );
  }
  await failingAs(what, () => installCopy(adapter.path, resolverDir, adapter.name, { replace: true }));
  // A previous version may be loaded (from this same path): unload it, so the next request resolves the copy.
  await failingAs(what, () => unloadAdapter(client, adapter.name, what, { missingOk: true }));
  return resolverPath(resolverDir, adapter.name);
}

/** Removes `<resolverDir>/<name>`; false when there was none. */
export async function removeFromResolverDir(
  server: ServerConfig,
  name: string,
  resolverDir: string,
): Promise<boolean> {
  checkName(detaching(server, name), name);
  return await failingAs(detaching(server, name), () => removeFolder(resolverDir, name));
}

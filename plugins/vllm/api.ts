/**
 * vLLM's LoRA routes, one function each: models, load and unload.
 *
 * @module
 */

import { isRecord, type ServerClient, ServerError, unexpectedAnswer } from "../http.ts";
import { AttachError, type ServerConfig } from "../types.ts";

/** What to do when the runtime routes are missing. */
export const RUNTIME_UPDATING_OFF =
  "runtime LoRA updating is off: start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=1";

/** One card of `GET /v1/models`: a base model (`parent` null) or an adapter (`root` = its path). */
export interface ModelCard {
  readonly id: string;
  readonly root: string | null;
  readonly parent: string | null;
}

/**
 * True for FastAPI's answer to a route that does not exist, `404 {"detail":"Not Found"}`: the runtime LoRA
 * routes when updating is off. vLLM's own 404s ("cannot be found", "No adapter found") have an error body.
 */
export function isMissingRoute(e: unknown): e is ServerError {
  if (!(e instanceof ServerError) || e.status !== 404) return false;
  try {
    const body = JSON.parse(e.body);
    return isRecord(body) && body.detail === "Not Found";
  } catch {
    return false;
  }
}

/** The error for a missing runtime route; `what` starts the message. */
export function routesOff(what: string, e: ServerError): AttachError {
  return new AttachError(`${what}: ${RUNTIME_UPDATING_OFF}`, { status: 404, serverMessage: e.serverMessage });
}

/** `GET /v1/models`. */
export async function models(client: ServerClient): Promise<ModelCard[]> {
  const body = await client.json("GET", "/v1/models");
  const data = isRecord(body) ? body.data : undefined;
  if (!Array.isArray(data)) throw unexpectedAnswer("GET /v1/models", body);
  return data.filter(isRecord).filter((c) => typeof c.id === "string").map((c) => ({
    id: c.id as string,
    root: typeof c.root === "string" ? c.root : null,
    parent: typeof c.parent === "string" ? c.parent : null,
  }));
}

/** The served base model: the card without a parent, else `server.baseModel`. */
export function baseName(server: ServerConfig, cards: readonly ModelCard[]): string {
  const base = cards.find((c) => c.parent === null)?.id ?? server.baseModel;
  if (!base) throw new AttachError(`Server '${server.name}': GET /v1/models lists no base model`);
  return base;
}

/** vLLM's 400 for a name that is loaded already (without `load_inplace`, or from a vLLM that predates it). */
function loadedAlready(e: unknown): boolean {
  return e instanceof ServerError && e.status === 400 && /already been loaded/.test(e.serverMessage);
}

/**
 * `POST /v1/load_lora_adapter`. A name that is loaded already (a new version) is replaced with `load_inplace`, so
 * requests never find it missing (those running keep the weights they started with); a vLLM that predates
 * `load_inplace` answers 400 "already been loaded" again, and the adapter is then unloaded and loaded (requests in
 * that instant fail). A first load does not send `load_inplace`: some vLLM versions keep the flag on the stored
 * request and then re-read the adapter from disk at every step (vllm-project/vllm#33791).
 */
export async function loadAdapter(
  client: ServerClient,
  name: string,
  path: string,
  what: string,
): Promise<void> {
  const request = { lora_name: name, lora_path: path };
  try {
    await client.send({ path: "/v1/load_lora_adapter", json: request });
    return;
  } catch (e) {
    if (isMissingRoute(e)) throw routesOff(what, e);
    if (!loadedAlready(e)) throw e;
  }
  try {
    await client.send({ path: "/v1/load_lora_adapter", json: { ...request, load_inplace: true } });
  } catch (e) {
    if (!loadedAlready(e)) throw e;
    await unloadAdapter(client, name, what);
    await client.send({ path: "/v1/load_lora_adapter", json: request });
  }
}

/**
 * `POST /v1/unload_lora_adapter`; with `missingOk`, an adapter the server does not hold (404 "cannot be found")
 * is not an error.
 */
export async function unloadAdapter(
  client: ServerClient,
  name: string,
  what: string,
  options: { missingOk?: boolean } = {},
): Promise<void> {
  try {
    await client.send({ path: "/v1/unload_lora_adapter", json: { lora_name: name } });
  } catch (e) {
    if (isMissingRoute(e)) throw routesOff(what, e);
    if (!(options.missingOk && e instanceof ServerError && e.status === 404)) throw e;
  }
}

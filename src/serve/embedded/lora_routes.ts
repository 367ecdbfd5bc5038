/**
 * vLLM's model listing and runtime LoRA routes, with vLLM's status codes and bodies:
 *
 * - `GET /v1/models`: the base model (`id` its served name, `root` its directory, `parent` null) and each loaded
 *   adapter (`id` its `lora_name`, `root` its `lora_path`, `parent` the served name).
 * - `POST /v1/load_lora_adapter` `{lora_name, lora_path, load_inplace?}`: 200 with the plain text
 *   `Success: LoRA adapter 'NAME' added successfully.`; 400 InvalidUserInput when a field is missing or the name
 *   is loaded and `load_inplace` is not true; 404 when there is no adapter at the path; 400 when the rank exceeds
 *   the limit, the adapter does not fit the model, or the path lies outside the allowed roots. `load_inplace`
 *   replaces the weights of a loaded adapter (requests already running keep the weights they started with).
 * - `POST /v1/unload_lora_adapter` `{lora_name}`: 200 with `Success: LoRA adapter 'NAME' removed successfully.`;
 *   404 when it is not loaded.
 *
 * One addition to vLLM: a `lora_name` equal to the base model's served name is a 400, since `model` could then
 * not tell them apart.
 *
 * @module
 */

import { Hono } from "hono";
import type { Model } from "../../model/model.ts";
import { ApiError, readJsonObject } from "./errors.ts";
import { type AdapterRegistry, alreadyLoaded, type LoadedAdapter } from "./registry.ts";
import type { SessionPool } from "./sessions.ts";

/** What the LoRA routes need. */
export interface LoraDeps {
  readonly model: Model;
  readonly servedName: string;
  readonly registry: AdapterRegistry;
  readonly pool: SessionPool;
}

/** A string field of a LoRA request; "" when absent (vLLM treats absent and empty alike). */
function stringField(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") {
    throw ApiError.badRequest(`'${name}' must be a string, got ${JSON.stringify(v)}`, name);
  }
  return v;
}

/** The model list entry of the base model or of an adapter. */
function modelCard(deps: LoraDeps, adapter: LoadedAdapter | null, created: number): Record<string, unknown> {
  const common = { object: "model", created, owned_by: "flexora" };
  if (!adapter) {
    return {
      id: deps.servedName,
      ...common,
      root: deps.model.dir,
      parent: null,
      max_model_len: deps.model.config.maxPositionEmbeddings,
    };
  }
  return { id: adapter.name, ...common, root: adapter.path, parent: deps.servedName };
}

/** `/v1/models`, `/v1/load_lora_adapter`, `/v1/unload_lora_adapter`. */
export function loraRoutes(deps: LoraDeps): Hono {
  const { registry, pool, servedName } = deps;
  return new Hono()
    .get("/v1/models", (c) => {
      const created = Math.floor(Date.now() / 1000);
      const data = [null, ...registry.list()].map((a) => modelCard(deps, a, created));
      return c.json({ object: "list", data });
    })
    .post("/v1/load_lora_adapter", async (c) => {
      const body = await readJsonObject(c);
      const name = stringField(body, "lora_name"), path = stringField(body, "lora_path");
      if (!name || !path) throw ApiError.invalidInput("Both 'lora_name' and 'lora_path' must be provided.");
      const inplace = body.load_inplace ?? false;
      if (typeof inplace !== "boolean") {
        throw ApiError.badRequest(
          `'load_inplace' must be a boolean, got ${JSON.stringify(inplace)}`,
          "load_inplace",
        );
      }
      if (name === servedName) {
        throw ApiError.invalidInput(
          `The lora adapter name '${name}' conflicts with a served base model.`,
          "lora_name",
        );
      }
      if (!inplace && registry.get(name)) throw alreadyLoaded(name);
      const adapter = await registry.read(name, path);
      // Build (or hold) its session now: the first request does not wait for it, and a failure shows here.
      const lease = await pool.acquire(adapter.config);
      try {
        registry.add(adapter, inplace);
      } finally {
        lease.release();
        pool.prune(); // the replaced adapter's session, if no other adapter shares it
      }
      return c.text(`Success: LoRA adapter '${name}' added successfully.`);
    })
    .post("/v1/unload_lora_adapter", async (c) => {
      const body = await readJsonObject(c);
      const name = stringField(body, "lora_name");
      if (!name) throw ApiError.invalidInput("either 'lora_name' and 'lora_int_id' needs to be provided.");
      registry.remove(name);
      pool.prune();
      return c.text(`Success: LoRA adapter '${name}' removed successfully.`);
    });
}

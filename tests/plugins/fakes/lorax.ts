/**
 * A fake LoRAX: no load route; `POST /generate` takes `parameters.adapter_id` (a folder, with
 * `adapter_source: "local"`), loads it on first use and caches it by id for good. As LoRAX does, a projection
 * missing in any layer is dropped from every layer, so an unpadded adapter of some layers generates like the base.
 * Errors are TGI-style `{"error", "error_type"}`.
 */

import { Hono } from "hono";
import { join } from "node:path";
import { readHeader } from "../../../src/model/safetensors.ts";
import { fromPeftKey } from "../../../src/model/peft.ts";
import {
  adapterIdentity,
  BASE,
  type CommonOptions,
  type FakeServer,
  generated,
  serveFake,
} from "./common.ts";
import { freshPath } from "../adapters.ts";

/** Options of {@link startLorax}. */
export interface LoraxOptions extends CommonOptions {
  /** The base model's decoder layers (default 3, the tiny model's). */
  readonly numLayers?: number;
  /** Further `options` of the returned configuration. */
  readonly options?: Record<string, unknown>;
}

/** The fake, with its adapter cache (id → identity) and the adapter ids requests named. */
export interface LoraxFake extends FakeServer {
  readonly cache: ReadonlyMap<string, string>;
  readonly adapterIds: readonly string[];
}

/** What LoRAX would generate with for a folder: nothing when every projection was dropped for a missing layer. */
async function loraxIdentity(dir: string, numLayers: number): Promise<string> {
  const identity = await adapterIdentity(dir);
  if (identity === BASE) return BASE;
  const layersOf = new Map<string, Set<number>>();
  for (const t of (await readHeader(join(dir, "adapter_model.safetensors"))).tensors) {
    const key = fromPeftKey(t.name);
    if (key) layersOf.set(key.module, (layersOf.get(key.module) ?? new Set()).add(key.layer));
  }
  const kept = [...layersOf].filter(([, layers]) => layers.size === numLayers).map(([m]) => m).sort();
  return kept.length === 0 ? BASE : `${identity}:${kept.join(",")}`;
}

/** Starts a fake LoRAX on 127.0.0.1, with a fresh adapter folder as `options.adapterDir`. */
export function startLorax(o: LoraxOptions = {}): Promise<LoraxFake> {
  const numLayers = o.numLayers ?? 3, adapterDir = freshPath("lorax-adapters");
  const cache = new Map<string, string>(), adapterIds: string[] = [];
  const app = new Hono();
  app.get("/health", (c) => c.body(null, 200));
  app.post("/generate", async (c) => {
    const { inputs, parameters = {} } = await c.req.json();
    let identity = BASE;
    const id = parameters.adapter_id;
    if (id) {
      adapterIds.push(id);
      if (parameters.adapter_source !== "local") {
        return c.json({
          error: `adapter_source ${parameters.adapter_source} is not served here`,
          error_type: "validation",
        }, 422);
      }
      if (!cache.has(id)) {
        try {
          cache.set(id, await loraxIdentity(id, numLayers));
        } catch {
          return c.json({
            error:
              `Request failed during generation: Server error: Can't find 'adapter_config.json' at '${id}'`,
            error_type: "generation",
          }, 400);
        }
      }
      identity = cache.get(id)!;
    }
    const out = generated(String(inputs), identity, parameters.max_new_tokens ?? 20);
    return c.json({
      generated_text: out.words.map((w) => ` ${w}`).join(""),
      details: parameters.details
        ? {
          finish_reason: "length",
          generated_tokens: out.words.length,
          tokens: out.words.map((w, i) => ({
            id: i,
            text: ` ${w}`,
            logprob: out.logprobs[i],
            special: false,
          })),
        }
        : undefined,
    });
  });
  const served = serveFake(app.fetch, {
    token: o.token,
    unauthorized: () =>
      Response.json({ error: "Unauthorized", error_type: "authentication" }, { status: 401 }),
  });
  return Promise.resolve({
    server: {
      name: "fake-lorax",
      kind: "lorax",
      url: served.url,
      token: o.token,
      options: { adapterDir, ...o.options },
    },
    requests: served.requests,
    failNext: served.failNext,
    close: served.close,
    // LoRAX keeps what it loaded under the id, whether or not the folder is still there.
    serving: (name) => Promise.resolve(cache.get(join(adapterDir, name))?.split(":")[0] ?? null),
    cache,
    adapterIds,
  });
}

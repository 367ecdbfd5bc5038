/**
 * `/v1/adapters`: adapters the sidecar has written (newest version per name, with its `flexora.json` summary),
 * and attaching or detaching them on configured servers.
 *
 * @module
 */

import { join } from "node:path";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { HTTPException } from "hono/http-exception";
import type { SidecarDeps } from "../deps.ts";
import { validationHook } from "../errors.ts";
import { ErrorBody, jsonContent, NameParam, ServerRef } from "../schemas.ts";

/** One adapter version on disk. */
export interface AdapterEntry {
  readonly name: string;
  readonly version: string;
  readonly path: string;
  readonly rank: number;
  readonly createdAt: string;
  /** From `flexora.json`: method, selected layers, gates, last test metrics. */
  readonly summary: Record<string, unknown>;
}

/** Every adapter's newest complete version (a folder appears only once its export finished). */
export async function listAdapters(dataDir: string): Promise<AdapterEntry[]> {
  const root = join(dataDir, "adapters");
  const out: AdapterEntry[] = [];
  const names = await Array.fromAsync(Deno.readDir(root)).catch(() => [] as Deno.DirEntry[]);
  for (const name of names) {
    let newest: AdapterEntry | null = null;
    for await (const v of Deno.readDir(join(root, name.name))) {
      const path = join(root, name.name, v.name);
      try {
        const report = JSON.parse(await Deno.readTextFile(join(path, "flexora.json")));
        const config = JSON.parse(await Deno.readTextFile(join(path, "adapter_config.json")));
        const createdAt = (await Deno.stat(path)).mtime!.toISOString();
        if (newest && newest.createdAt >= createdAt) continue;
        const test = report.metrics?.retrain?.epochs?.at?.(-1)?.test ?? null;
        newest = {
          name: name.name,
          version: v.name,
          path,
          rank: config.r,
          createdAt,
          summary: {
            method: report.method,
            selectedLayers: report.selectedLayers,
            gates: report.gates ?? null,
            test,
          },
        };
      } catch {
        continue; // not an adapter folder (or a temporary one)
      }
    }
    if (newest) out.push(newest);
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

const json = jsonContent;
const errors = {
  400: json(ErrorBody, "invalid request"),
  404: json(ErrorBody, "unknown adapter or server"),
  501: json(ErrorBody, "the server cannot do this"),
  502: json(ErrorBody, "the server refused or failed"),
};
const body = { body: { content: { "application/json": { schema: ServerRef } }, required: true } };
const list = createRoute({
  method: "get",
  path: "/",
  responses: { 200: json(z.object({ adapters: z.array(z.record(z.string(), z.unknown())) }), "adapters") },
});
const verb = (v: "attach" | "detach") =>
  createRoute({
    method: "post",
    path: `/{name}/${v}`,
    request: { params: NameParam, ...body },
    responses: { 200: json(z.record(z.string(), z.unknown()), `${v}ed`), ...errors },
  });

/** The adapters sub-app. */
export function adaptersApp(deps: SidecarDeps): OpenAPIHono {
  const app = new OpenAPIHono({ defaultHook: validationHook });
  const lookup = async (name: string, serverName: string) => {
    const server = deps.config.servers.find((s) => s.name === serverName);
    if (!server) {
      throw new HTTPException(404, { message: `'server': no server '${serverName}' is configured` });
    }
    const adapter = (await listAdapters(deps.config.dataDir)).find((a) => a.name === name);
    return { server, adapter, plugin: deps.plugins[server.kind] };
  };
  app.openapi(
    list,
    async (c) => c.json({ adapters: await listAdapters(deps.config.dataDir) as never[] }, 200),
  );
  app.openapi(verb("attach"), async (c) => {
    const { name } = c.req.valid("param");
    const { server, adapter, plugin } = await lookup(name, c.req.valid("json").server);
    if (!adapter) throw new HTTPException(404, { message: `no adapter '${name}'` });
    const started = performance.now();
    const result = await plugin.attach(server, {
      name,
      path: adapter.path,
      rank: adapter.rank,
      version: adapter.version,
    }, deps.call);
    deps.metrics.attachCount++;
    deps.metrics.attachSeconds += (performance.now() - started) / 1000;
    return c.json({ ...result }, 200);
  });
  app.openapi(verb("detach"), async (c) => {
    const { name } = c.req.valid("param");
    const { server, plugin } = await lookup(name, c.req.valid("json").server);
    await plugin.detach(server, name, deps.call);
    return c.json({ server: server.name, adapter: name, detached: true }, 200);
  });
  return app;
}

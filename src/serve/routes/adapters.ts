/**
 * `/v1/adapters`: adapters the sidecar has written (newest version per name, with its `flexora.json` summary and
 * where it is desired), and attaching or detaching them on every replica of a configured server: both change the
 * desired state, which the reconcile loop keeps true ({@link ../reconcile/mod.ts}).
 *
 * @module
 */

import { join } from "node:path";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { HTTPException } from "hono/http-exception";
import { readFlexoraJson } from "../../flexora/mod.ts";
import { readAdapterConfig } from "../../model/peft.ts";
import type { SidecarDeps } from "../deps.ts";
import { validationHook } from "../errors.ts";
import { syncAdapters } from "../store/artifacts.ts";
import { detachEverywhere, type ServerState } from "../reconcile/mod.ts";
import { AttachReport, DetachReport, ErrorBody, jsonContent, NameParam, ServerRef } from "../schemas.ts";

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
        const report = await readFlexoraJson(path);
        const config = await readAdapterConfig(path);
        const createdAt = (await Deno.stat(path)).mtime!.toISOString();
        if (newest && newest.createdAt >= createdAt) continue;
        const test = report.metrics.retrain?.epochs.at(-1)?.test ?? null;
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

/** Where each desired attachment of `name` stands: server, served name, version, and each replica's version. */
function attachmentsOf(servers: readonly ServerState[], adapter: string) {
  return servers.flatMap((server) =>
    server.desired.flatMap((row) =>
      row.state === "attached" && row.adapter === adapter
        ? [{
          server: row.server,
          name: row.name,
          version: row.version,
          replicas: server.replicas.map((r) => ({
            url: r.url,
            version: r.adapters.find((a) => a.name === row.name)?.version ?? null,
          })),
        }]
        : []
    )
  );
}

const json = jsonContent;
const errors = {
  400: json(ErrorBody, "invalid request"),
  404: json(ErrorBody, "unknown adapter or server, or an adapter that is not attached"),
  501: json(ErrorBody, "the server cannot do this"),
  502: json(ErrorBody, "no replica could do it (the message says whether the attachment stays desired)"),
};
const body = { body: { content: { "application/json": { schema: ServerRef } }, required: true } };
const list = createRoute({
  method: "get",
  path: "/",
  responses: { 200: json(z.object({ adapters: z.array(z.record(z.string(), z.unknown())) }), "adapters") },
});
const attach = createRoute({
  method: "post",
  path: "/{name}/attach",
  request: { params: NameParam, ...body },
  responses: {
    200: json(AttachReport, "attached on at least one replica; the attachment is desired"),
    ...errors,
  },
});
const detach = createRoute({
  method: "post",
  path: "/{name}/detach",
  request: { params: NameParam, ...body },
  responses: { 200: json(DetachReport, "detached (replicas not reached are cleaned up later)"), ...errors },
});

/** The adapters sub-app. */
export function adaptersApp(deps: SidecarDeps): OpenAPIHono {
  const app = new OpenAPIHono({ defaultHook: validationHook });
  const server = (serverName: string) => {
    const found = deps.config.servers.find((s) => s.name === serverName);
    if (!found) {
      throw new HTTPException(404, { message: `'server': no server '${serverName}' is configured` });
    }
    return found;
  };
  // A shared store holds the adapters every host trained: those missing here are written first.
  const synced = () =>
    deps.store.shared
      ? syncAdapters(deps.store.artifacts, join(deps.config.dataDir, "adapters"))
      : Promise.resolve();
  app.openapi(list, async (c) => {
    await synced();
    const servers = await deps.reconciler.report();
    const adapters = (await listAdapters(deps.config.dataDir)).map((a) => ({
      ...a,
      attachments: attachmentsOf(servers, a.name),
    }));
    return c.json({ adapters }, 200);
  });
  app.openapi(attach, async (c) => {
    const { name } = c.req.valid("param");
    const { name: serverName } = server(c.req.valid("json").server);
    await synced();
    const adapter = (await listAdapters(deps.config.dataDir)).find((a) => a.name === name);
    if (!adapter) throw new HTTPException(404, { message: `no adapter '${name}'` });
    const { version, path, rank } = adapter;
    return c.json(await deps.attach({ server: serverName, name, adapter: name, version, path, rank }), 200);
  });
  app.openapi(detach, async (c) => {
    const { name } = c.req.valid("param");
    const { name: serverName } = server(c.req.valid("json").server);
    return c.json(await detachEverywhere(deps.reconciler, serverName, name), 200);
  });
  return app;
}

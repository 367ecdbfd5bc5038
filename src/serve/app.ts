/**
 * The sidecar: a Hono app composed of sub-apps (jobs, adapters, system), with bearer auth, a body limit, one
 * `onError` that answers JSON, and the OpenAPI description at `/openapi.json`.
 *
 * @module
 */

import { join } from "node:path";
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { CallContext, ServerKind, ServerPlugin } from "../../plugins/types.ts";
import type { Metrics, SidecarConfig, SidecarDeps } from "./deps.ts";
import { errorBody, toResponse } from "./errors.ts";
import { JobManager, type Spawn } from "./jobs.ts";
import { adaptersApp } from "./routes/adapters.ts";
import { jobsApp } from "./routes/jobs.ts";
import { systemApp } from "./routes/system.ts";
import { uiApp } from "./routes/ui.ts";
import { bearerAuth, isLoopback } from "./security.ts";
import { JobStore } from "./store.ts";
import denoJson from "../../deno.json" with { type: "json" };

/** A running sidecar's parts. */
export interface Sidecar {
  readonly app: OpenAPIHono;
  readonly manager: JobManager;
  /** Stops the worker (the running job checkpoints and becomes interrupted) and closes the store. */
  close(): Promise<void>;
}

/** Builds the sidecar; `spawn` and `call` replace the child-process runner and the HTTP client in tests. */
export async function createSidecar(
  config: SidecarConfig,
  plugins: { readonly [K in ServerKind]: ServerPlugin },
  overrides: { spawn?: Spawn; call?: CallContext } = {},
): Promise<Sidecar> {
  await Deno.mkdir(config.dataDir, { recursive: true });
  const store = new JobStore(join(config.dataDir, "jobs.sqlite"));
  const call = overrides.call ?? { fetch };
  const manager = new JobManager({
    store,
    dataDir: config.dataDir,
    servers: config.servers,
    plugins,
    maxQueued: config.maxQueued,
    spawn: overrides.spawn,
    call,
  });
  const metrics: Metrics = { errors: 0, attachCount: 0, attachSeconds: 0 };
  const deps: SidecarDeps = { config, store, manager, plugins, call, metrics };

  const app = new OpenAPIHono();
  app.use(bearerAuth({ token: config.token, guardReads: !isLoopback(config.host) }));
  app.use(bodyLimit({
    maxSize: config.maxBodyBytes ?? 1 << 20,
    onError: () => {
      throw new HTTPException(413, {
        message: `request body larger than ${config.maxBodyBytes ?? 1 << 20} bytes`,
      });
    },
  }));
  app.route("/", systemApp(deps));
  app.route("/v1/jobs", jobsApp(deps));
  app.route("/v1/adapters", adaptersApp(deps));
  app.route("/", uiApp(deps));
  app.doc("/openapi.json", {
    openapi: "3.0.0",
    info: { title: "flexora sidecar", version: denoJson.version },
  });
  app.notFound((c) => c.json(errorBody(`no route ${c.req.method} ${c.req.path}`), 404));
  app.onError((e, c) => {
    metrics.errors++;
    return toResponse(e, c);
  });
  manager.start();
  return {
    app,
    manager,
    async close() {
      await manager.close();
      store.close();
    },
  };
}

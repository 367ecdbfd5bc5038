/**
 * The sidecar: a Hono app composed of sub-apps (jobs, adapters, system), with bearer auth, a body limit, one
 * `onError` that answers JSON, and the OpenAPI description at `/openapi.json`; beside it the job worker and the
 * reconcile loop, which keeps the desired attachments true on every replica.
 *
 * @module
 */

import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { CallContext, ServerKind, ServerPlugin } from "../../plugins/types.ts";
import type { Metrics, SidecarConfig, SidecarDeps } from "./deps.ts";
import { errorBody, toResponse } from "./errors.ts";
import { JobManager } from "./jobs.ts";
import { sidecarId } from "./lease.ts";
import type { Spawn } from "./spawn.ts";
import {
  attachEverywhere,
  type Attachment,
  type AttachReport,
  type Clock,
  type ReconcileEvent,
  Reconciler,
} from "./reconcile/mod.ts";
import { adaptersApp } from "./routes/adapters.ts";
import { jobsApp } from "./routes/jobs.ts";
import { systemApp } from "./routes/system.ts";
import { uiApp } from "./routes/ui.ts";
import {
  allowedHosts,
  bearerAuth,
  checkToken,
  hostGuard,
  isLoopback,
  privateDataDir,
  redactResponses,
} from "./security.ts";
import { openStore, type Store } from "./store/mod.ts";
import { materialize } from "./store/artifacts.ts";
import { basename, dirname } from "node:path";
import denoJson from "../../deno.json" with { type: "json" };

/** A running sidecar's parts. */
export interface Sidecar {
  readonly app: OpenAPIHono;
  readonly manager: JobManager;
  readonly reconciler: Reconciler;
  /** Where jobs, desired attachments and artifacts are kept. */
  readonly store: Store;
  /**
   * Stops the worker (the running job checkpoints and becomes interrupted) and the reconcile loop, and closes the
   * store.
   */
  close(): Promise<void>;
}

/** What tests may replace: the runner, the HTTP client to servers, the reconcile loop's clock; and its events. */
export interface SidecarOverrides {
  readonly spawn?: Spawn;
  readonly call?: CallContext;
  readonly clock?: Clock;
  /** Called after every reconcile pass, attach and detach on a replica (the CLI logs them). */
  readonly onReconcile?: (e: ReconcileEvent) => void;
}

/** Builds the sidecar and starts its job worker and reconcile loop. */
export async function createSidecar(
  config: SidecarConfig,
  plugins: { readonly [K in ServerKind]: ServerPlugin },
  overrides: SidecarOverrides = {},
): Promise<Sidecar> {
  checkToken(config.token, "the configured token", config.host);
  await privateDataDir(config.dataDir);
  const store = await openStore(config.store, config.dataDir);
  const call = overrides.call ?? { fetch };
  const owner = config.sidecarId ?? await sidecarId(config.dataDir);
  const reconciler = new Reconciler({
    store: store.desired,
    servers: config.servers,
    plugins,
    call,
    settings: config.reconcile,
    clock: overrides.clock,
    fleet: { leases: store, holder: owner },
    // Versions are `<data dir>/adapters/<name>/<job id>`, stored under `<name>/<job id>` (src/serve/jobs.ts).
    ensureAdapter: store.shared
      ? async (ref) => {
        const key = `${basename(dirname(ref.path))}/${basename(ref.path)}`;
        if (!await materialize(store.artifacts, "adapter", key, ref.path)) {
          throw new Error(`the adapter ${ref.path} is neither on this host nor in the store (${key})`);
        }
      }
      : undefined,
    onEvent: (e) => {
      overrides.onReconcile?.(e);
      manager.reconciled(e); // a job whose attach failed follows the loop's later success
    },
  });
  const metrics: Metrics = { errors: 0, attachCount: 0, attachSeconds: 0 };
  const attach = async (a: Attachment): Promise<AttachReport> => {
    const started = performance.now();
    try {
      return await attachEverywhere(reconciler, a);
    } finally {
      metrics.attachCount++;
      metrics.attachSeconds += (performance.now() - started) / 1000;
    }
  };
  const manager = new JobManager({
    store,
    dataDir: config.dataDir,
    servers: config.servers,
    attach,
    maxQueued: config.maxQueued,
    device: config.device,
    spawn: overrides.spawn,
    stopGraceMs: config.stopGraceMs,
    maxRetries: config.maxRetries,
    owner,
    heartbeatMs: config.heartbeatMs,
  });
  const deps: SidecarDeps = { config, store, manager, reconciler, attach, plugins, call, metrics };

  const app = new OpenAPIHono();
  app.use(redactResponses());
  if (isLoopback(config.host) || config.allowedHosts?.length) {
    app.use(hostGuard(allowedHosts(config.host, config.allowedHosts)));
  }
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
  await manager.start();
  reconciler.start();
  return {
    app,
    manager,
    reconciler,
    store,
    async close() {
      await manager.close(); // a job in its attaching stage finishes its rollout first
      await reconciler.stop();
      await store.close();
    },
  };
}

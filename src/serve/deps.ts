/**
 * What the sidecar's routes depend on, passed in (no module globals).
 *
 * @module
 */

import type { Device } from "../runtime/device.ts";
import type { CallContext, ServerKind, ServerPlugin } from "../../plugins/types.ts";
import type { DeploymentConfig } from "./deployments.ts";
import type { JobManager } from "./jobs.ts";
import type { Attachment, AttachReport, Reconciler, ReconcileSettings } from "./reconcile/mod.ts";
import type { Store } from "./store/mod.ts";

/** The sidecar's configuration. */
export interface SidecarConfig {
  /** Where checkpoints and adapters are written (and the default store, `jobs.sqlite`). */
  readonly dataDir: string;
  /**
   * The store's URL: `sqlite:PATH` or `postgres://user:password@host:port/db`, which any number of sidecars
   * share (`flexora serve --store`, `FLEXORA_STORE`); default `jobs.sqlite` in the data dir.
   */
  readonly store?: string;
  /** Bearer token for mutating routes (and all routes off loopback). */
  readonly token: string;
  /** The address the sidecar listens on (decides whether reads need the token too). */
  readonly host: string;
  /**
   * Names besides loopback's and `host` that requests may give as `Host`. A loopback sidecar checks `Host`
   * (against DNS rebinding); one off loopback checks it only when names are given here.
   */
  readonly allowedHosts?: readonly string[];
  /**
   * Hub model ids jobs may name (`org/name[@revision]`, downloaded by the job into the Hugging Face cache): `true`
   * for any, or a list of ids (`org/name`) and organisations (`org`); none by default (`flexora serve
   * --allow-hub`).
   */
  readonly allowHub?: boolean | readonly string[];
  /** Folders that model and data paths must lie in. */
  readonly modelRoots: readonly string[];
  readonly dataRoots: readonly string[];
  /** Inference servers adapters can be attached to, each with one or more replicas. */
  readonly servers: readonly DeploymentConfig[];
  /** The reconcile loop's interval, jitter, backoff and pass timeout (defaults: `DEFAULT_RECONCILE`). */
  readonly reconcile?: Partial<ReconcileSettings>;
  /** Largest request body in bytes (default 1 MiB). */
  readonly maxBodyBytes?: number;
  /** Jobs waiting at most (default 16). */
  readonly maxQueued?: number;
  /** Where jobs train (default "cpu"; `flexora serve --device`). */
  readonly device?: Device;
  /** How long a runner asked to stop gets before SIGTERM, and again before SIGKILL (default 10 000 ms). */
  readonly stopGraceMs?: number;
  /** Automatic resumptions of a job whose runner died (default 2). */
  readonly maxRetries?: number;
  /** This sidecar's id in the store (default: kept in `<dataDir>/sidecar-id`, made at the first start). */
  readonly sidecarId?: string;
  /**
   * How often a running job's lease is renewed and the shared queue checked (default 5000 ms; `flexora serve
   * --heartbeat`); a lease lasts three heartbeats, so a dead sidecar's jobs resume elsewhere within about that.
   */
  readonly heartbeatMs?: number;
}

/** Counters for `/metrics`. */
export interface Metrics {
  errors: number;
  attachCount: number;
  attachSeconds: number;
}

export interface SidecarDeps {
  readonly config: SidecarConfig;
  readonly store: Store;
  readonly manager: JobManager;
  /** Keeps the desired attachments true on every replica. */
  readonly reconciler: Reconciler;
  /** Makes an attachment desired and rolls it out (counted in the metrics); throws when no replica serves it. */
  readonly attach: (a: Attachment) => Promise<AttachReport>;
  readonly plugins: { readonly [K in ServerKind]: ServerPlugin };
  readonly call: CallContext;
  readonly metrics: Metrics;
}

/**
 * What the sidecar's routes depend on, passed in (no module globals).
 *
 * @module
 */

import type { CallContext, ServerConfig, ServerKind, ServerPlugin } from "../../plugins/types.ts";
import type { JobManager } from "./jobs.ts";
import type { JobStore } from "./store.ts";

/** The sidecar's configuration. */
export interface SidecarConfig {
  /** Where jobs, checkpoints and adapters live. */
  readonly dataDir: string;
  /** Bearer token for mutating routes (and all routes off loopback). */
  readonly token: string;
  /** The address the sidecar listens on (decides whether reads need the token too). */
  readonly host: string;
  /** Folders that model and data paths must lie in. */
  readonly modelRoots: readonly string[];
  readonly dataRoots: readonly string[];
  /** Inference servers adapters can be attached to. */
  readonly servers: readonly ServerConfig[];
  /** Largest request body in bytes (default 1 MiB). */
  readonly maxBodyBytes?: number;
  /** Jobs waiting at most (default 16). */
  readonly maxQueued?: number;
}

/** Counters for `/metrics`. */
export interface Metrics {
  errors: number;
  attachCount: number;
  attachSeconds: number;
}

export interface SidecarDeps {
  readonly config: SidecarConfig;
  readonly store: JobStore;
  readonly manager: JobManager;
  readonly plugins: { readonly [K in ServerKind]: ServerPlugin };
  readonly call: CallContext;
  readonly metrics: Metrics;
}

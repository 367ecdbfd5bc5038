/**
 * The store's contract: what a sidecar keeps durable (jobs, their history, desired attachments and detach
 * tombstones, finished adapters and training checkpoints), whatever database holds it. Every method is async:
 * SQLite ({@link ./sqlite.ts}) answers at once, PostgreSQL ({@link ./postgres.ts}) over the network. One
 * conformance suite (tests/serve/store_conformance_test.ts) runs against both.
 *
 * @module
 */

import type { HistoryPoint } from "../../flexora/mod.ts";
import type { LeaseTable } from "../lease.ts";

/** Every job state, in the order a job can pass through them. */
export const JOB_STATES = [
  "queued",
  "starting",
  "downloading",
  "searching",
  "retraining",
  "exporting",
  "attaching",
  "succeeded",
  "failed",
  "attach_failed",
  "cancelled",
  "interrupted",
] as const;

/** Job states. */
export type JobState = typeof JOB_STATES[number];

/** States in which a job is finished. */
export const FINAL_STATES: readonly JobState[] = ["succeeded", "failed", "attach_failed", "cancelled"];

/** States in which a job's runner is (or should be) working. */
export const ACTIVE_STATES: readonly JobState[] = [
  "starting",
  "downloading",
  "searching",
  "retraining",
  "exporting",
  "attaching",
];

/** A job as stored and served. */
export interface JobRecord {
  readonly id: string;
  readonly state: JobState;
  /** The validated request. */
  readonly request: Record<string, unknown>;
  /** Latest progress: stage, step, total, losses, gates, … */
  readonly progress: Record<string, unknown> | null;
  /** What the run produced: selected layers, gates, metrics, timings, adapter path, attach result. */
  readonly result: Record<string, unknown> | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  /** Automatic resumptions after the runner died, since the last start by hand. */
  readonly retries: number;
  /** The sidecar that claimed it last (it holds the lease while the job is active), or null. */
  readonly owner: string | null;
  /** Its next run continues from its checkpoint (it ran before). */
  readonly resume: boolean;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** The fields {@link JobStore.update} may change. */
export interface JobFields {
  state?: JobState;
  progress?: unknown;
  result?: unknown;
  error?: JobRecord["error"];
  retries?: number;
  resume?: boolean;
}

/** The code of a job's error when its runner died; such jobs are interrupted and retried. */
export const RUNNER_DIED = "runner_died";

/** Who takes a job, for how long, and which jobs it can run. */
export interface Claimer {
  /** The sidecar's id: it holds the job's lease. */
  readonly owner: string;
  /** How long the lease lasts without a heartbeat, in ms of the database's clock. */
  readonly leaseMs: number;
  /** The devices it trains on: a job whose request names another waits for a sidecar that has it. */
  readonly devices: readonly string[];
  /** Jobs it cannot run (their model or data is not on its host): left for other sidecars. */
  readonly exclude?: readonly string[];
}

/** What the owner of a running job learns from renewing its lease. */
export interface Heartbeat {
  /**
   * False when the lease was lost (it lapsed and the job was taken back, or another sidecar holds it): the owner
   * must stop the job. A job that ended is still its owner's.
   */
  readonly held: boolean;
  /** Someone asked, on any sidecar, to cancel the job. */
  readonly cancelRequested: boolean;
}

/** Thrown by an update that names an owner which no longer holds the job's lease. */
export class LeaseLostError extends Error {
  override name = "LeaseLostError";
}

/** The error of an update by `owner`, which no longer holds job `id`. */
export function leaseLost(id: string, owner: string): LeaseLostError {
  return new LeaseLostError(
    `job '${id}': sidecar '${owner}' no longer holds its lease (another sidecar took it)`,
  );
}

/** One point of a job's history, with its id: ids only grow, so `after` an id pages through it. */
export type HistoryRow = HistoryPoint & { readonly id: number };

/** Jobs and their history. */
export interface JobStore {
  /** Adds a queued job (its request's credentials redacted). */
  create(id: string, request: Record<string, unknown>): Promise<JobRecord>;
  /**
   * Takes the oldest queued job: one statement moves it from `queued` to `starting` and returns it, so two
   * callers (two sidecars on one database included) never take the same job. Null when none is queued. With a
   * claimer (a sidecar), the claim also gives it the job's lease and takes only jobs whose device it has.
   */
  claim(by?: Claimer): Promise<JobRecord | null>;
  /** Renews the lease of `owner` on a running job, and reads whether a cancel was asked for. */
  heartbeat(id: string, owner: string, leaseMs: number): Promise<Heartbeat>;
  /**
   * Queues again, to resume from their checkpoints, the jobs no sidecar works on: active jobs whose lease lapsed
   * (their sidecar died or lost the database), that have no owner, or that `owner` held (this sidecar's previous
   * life, at its start); and interrupted jobs (a sidecar stopped) except those whose automatic retries after
   * their runner died (`error.code` {@link RUNNER_DIED}) reached `maxRetries`. One statement: each job is taken back
   * once, by one caller; returns them.
   */
  recover(maxRetries: number, owner?: string): Promise<JobRecord[]>;
  /**
   * Cancel from any sidecar: a queued or interrupted job is cancelled at once; a running one is marked, and its
   * owner stops it at its next heartbeat. Null when the job is finished or unknown.
   */
  requestCancel(id: string): Promise<JobRecord | null>;
  /** The job, or null. */
  get(id: string): Promise<JobRecord | null>;
  /** Every job, oldest first (optionally only some states). */
  list(states?: readonly JobState[]): Promise<JobRecord[]>;
  /**
   * Updates some fields of a job (attach results and errors are stored with credentials redacted). With `owner`,
   * only while `owner` holds the job, so a sidecar that lost its lease cannot overwrite what the new owner
   * writes: otherwise it throws {@link LeaseLostError}.
   */
  update(id: string, fields: JobFields, owner?: string): Promise<JobRecord>;
  /** Appends a point to a job's history; returns its row. */
  addPoint(id: string, point: HistoryPoint): Promise<HistoryRow>;
  /** A job's history points with an id past `after`, oldest first, at most `limit` (-1: all). */
  history(id: string, after?: number, limit?: number): Promise<HistoryRow[]>;
  /** The id of a job's last history point (0 when it has none). */
  lastPoint(id: string): Promise<number>;
  /**
   * Cuts a job's history back to where a stage (re)starts: that stage's points past `step` go (for the
   * retraining, its evaluations too). Returns how many were removed.
   */
  rewindHistory(id: string, stage: "search" | "retrain", step: number): Promise<number>;
  /** Counts of jobs by state. */
  counts(): Promise<Record<string, number>>;
}

/** What to attach: the adapter version `version` (folder `path`) served as `name` on every replica of `server`. */
export interface Attachment {
  /** The configured server (deployment). */
  readonly server: string;
  /** The name requests use (`lora_name`). */
  readonly name: string;
  /** The adapter's own name (its folder under `<dataDir>/adapters/`); usually `name`. */
  readonly adapter: string;
  /** The version: the job id that wrote it, its folder name. */
  readonly version: string;
  readonly path: string;
  readonly rank: number;
}

/** A desired row: an attachment to keep true, or a detached name to keep off (a tombstone). */
export type Desired =
  | (Attachment & { readonly state: "attached"; readonly updatedAt: string })
  | {
    readonly state: "detached";
    readonly server: string;
    readonly name: string;
    readonly updatedAt: string;
  };

/**
 * The desired attachments: one row per (server, name). `attached` rows say what to serve; a `detached` row is a
 * tombstone, kept until every replica of the server was seen without the name.
 */
export interface DesiredStore {
  /** The row for `name` on `server`, or null. */
  get(server: string, name: string): Promise<Desired | null>;
  /** Every row (of one server), ordered by server and name. */
  list(server?: string): Promise<Desired[]>;
  /** Makes `a` desired (replacing what was desired under its name); returns the row it replaced. */
  attach(a: Attachment): Promise<Desired | null>;
  /** Marks `name` detached on `server` (a tombstone); returns the row it replaced. */
  detach(server: string, name: string): Promise<Desired | null>;
  /** Puts `row` back as it was (null: no row), undoing an attach or detach that failed everywhere. */
  restore(server: string, name: string, row: Desired | null): Promise<void>;
  /** Drops the tombstone of `name` written at `updatedAt` (a newer row is left alone). */
  forget(server: string, name: string, updatedAt: string): Promise<void>;
}

/** What an artifact is: a finished adapter (key `<name>/<version>`) or a job's checkpoints (key: the job id). */
export type ArtifactKind = "adapter" | "checkpoint";

/** The files of one artifact: path relative to its folder → bytes. */
export type ArtifactFiles = ReadonlyMap<string, Uint8Array>;

/** Largest artifact (all its files together) a store takes: 256 MiB. */
export const MAX_ARTIFACT_BYTES = 256 * 1024 * 1024;

/** Thrown when an artifact is larger than {@link MAX_ARTIFACT_BYTES}. */
export class ArtifactTooLargeError extends Error {
  override name = "ArtifactTooLargeError";
}

/** A stored artifact: its key, its size (all files) and when it was last put. */
export interface ArtifactInfo {
  readonly key: string;
  readonly bytes: number;
  readonly updatedAt: string;
}

/** Adapters and checkpoints as bytes in the database, so another host can resume or serve them. */
export interface ArtifactStore {
  /** Replaces every file of the artifact at once (a reader sees the old files or the new, never a mix). */
  put(kind: ArtifactKind, key: string, files: ArtifactFiles): Promise<void>;
  /** The artifact's files, or null when none is stored. */
  get(kind: ArtifactKind, key: string): Promise<Map<string, Uint8Array> | null>;
  /** The artifacts stored of a kind, sorted by key. */
  list(kind: ArtifactKind): Promise<ArtifactInfo[]>;
  /** Removes the artifact (nothing when absent). */
  delete(kind: ArtifactKind, key: string): Promise<void>;
}

/** One database: the jobs with their history, the desired attachments, the artifacts. */
export interface Store extends JobStore, LeaseTable {
  /** The store's URL, credentials redacted (`sqlite:PATH`, `postgres://user@host/db`). */
  readonly url: string;
  /**
   * Whether other sidecars may share this store (PostgreSQL): then a job's checkpoints and its finished adapter
   * are kept in {@link artifacts} too, so another host can resume or serve them. A SQLite store is one host's.
   */
  readonly shared: boolean;
  readonly desired: DesiredStore;
  readonly artifacts: ArtifactStore;
  /** The schema version the database is at. */
  schemaVersion(): Promise<number>;
  close(): Promise<void>;
}

/** Checks an artifact's size before it is written; the error names it and its size. */
export function checkArtifactSize(kind: ArtifactKind, key: string, files: ArtifactFiles): void {
  let bytes = 0;
  for (const data of files.values()) bytes += data.byteLength;
  if (bytes > MAX_ARTIFACT_BYTES) {
    throw new ArtifactTooLargeError(
      `the ${kind} '${key}' is ${bytes} bytes; the store takes at most ${MAX_ARTIFACT_BYTES} bytes per artifact`,
    );
  }
}

/**
 * The job manager: a FIFO queue with one training worker, durable state in a {@link JobStore}, each job run by a
 * child process ({@link ./runner.ts}, spoken to through {@link ./protocol.ts}), progress fanned out to
 * subscribers (SSE), and, when the job asks for it, the adapter made desired on its server and rolled out to every
 * replica ({@link ./reconcile/mod.ts}).
 *
 * Each job writes its adapter to `<dataDir>/adapters/<name>/<job id>`: a new folder per version, because servers
 * re-read an evicted adapter from its path. A job starts only through the store's atomic claim. Cancel asks the
 * runner to stop (it checkpoints), then ends it: SIGTERM after a grace period, SIGKILL after another. A runner
 * that dies without a word (the OOM killer's SIGKILL) leaves its job `interrupted`, resumed from its checkpoint
 * automatically a bounded number of times.
 *
 * The worker, its leases and heartbeat are in {@link ./job_worker.ts}; subscriptions in {@link ./job_events.ts};
 * following the reconcile loop in {@link ./job_reconcile.ts}. At start the sidecar takes back the jobs its previous
 * life held: on one host with SQLite, that is the whole of "jobs found running at start-up are queued again to
 * resume from their last checkpoint".
 *
 * @module
 */

import type { Device } from "../runtime/device.ts";
import type { ServerConfig } from "../../plugins/types.ts";
import { type Spawn, spawnRunner } from "./spawn.ts";
import type { JobRequest } from "./job_run.ts";
import type { JobChange } from "./follow.ts";
import { JobEvents, type Listener } from "./job_events.ts";
import { followReconcile } from "./job_reconcile.ts";
import { JobWorker } from "./job_worker.ts";
import type { AttachReport } from "./reconcile/operations.ts";
import type { ReconcileEvent } from "./reconcile/reconciler.ts";
import {
  type Attachment,
  FINAL_STATES,
  type HistoryRow,
  type JobFields,
  type JobRecord,
  RUNNER_DIED,
  type Store,
} from "./store/mod.ts";

/** Thrown for requests the manager refuses; `status` is the HTTP status to answer with. */
export class JobError extends Error {
  override name = "JobError";
  readonly status: 404 | 409 | 429;
  constructor(status: 404 | 409 | 429, message: string) {
    super(message);
    this.status = status;
  }
}

/** Options of a {@link JobManager}. */
export interface JobManagerOptions {
  /** Jobs and history; when shared with other sidecars, also each job's checkpoints and finished adapter. */
  readonly store: Store;
  readonly dataDir: string;
  readonly servers: readonly ServerConfig[];
  /**
   * Makes an attachment desired and rolls it out to every replica of its server (the reconciler's
   * `attachEverywhere`); throws when no replica serves it.
   */
  readonly attach: (a: Attachment) => Promise<AttachReport>;
  /** Queued jobs at most before submissions get 429 (default 16). */
  readonly maxQueued?: number;
  /** Where jobs that name no device train: a device name the runner resolves (default "cpu"). */
  readonly device?: Device;
  readonly spawn?: Spawn;
  /**
   * How long a runner asked to stop may take before it gets SIGTERM, and again before SIGKILL (default 10 s:
   * a step and a checkpoint of a large model).
   */
  readonly stopGraceMs?: number;
  /** Automatic resumptions of a job whose runner died (default 2). */
  readonly maxRetries?: number;
  /** This sidecar's id, which holds the leases of the jobs it runs (default: a random one). */
  readonly owner?: string;
  /**
   * How often a running job's lease is renewed, lapsed leases looked for and the shared queue checked (default
   * 5000 ms); a lease lasts three heartbeats. Followers of a job another sidecar runs poll it as often (at most
   * every second).
   */
  readonly heartbeatMs?: number;
}

type ManagerSettings = Required<JobManagerOptions>;

export { type JobChange, type JobRequest, RUNNER_DIED };

/** The queue and its one worker. */
export class JobManager {
  readonly #o: ManagerSettings;
  readonly #events: JobEvents;
  readonly #worker: JobWorker;
  /** Follow-ups of reconcile events, one after another. */
  #reconciling: Promise<void> = Promise.resolve();

  constructor(options: JobManagerOptions) {
    this.#o = {
      ...options,
      maxQueued: options.maxQueued ?? 16,
      device: options.device ?? "cpu",
      spawn: options.spawn ?? spawnRunner,
      stopGraceMs: options.stopGraceMs ?? 10_000,
      maxRetries: options.maxRetries ?? 2,
      owner: options.owner ?? crypto.randomUUID(),
      heartbeatMs: options.heartbeatMs ?? 5000,
    };
    this.#events = new JobEvents(this.#o.store);
    this.#worker = new JobWorker(this.#o, (job, point) => this.#events.notify(job, point));
  }

  /** This sidecar's id in the store. */
  get owner(): string {
    return this.#o.owner;
  }

  /** Settles when the worker is idle (for tests and shutdown). */
  get idle(): Promise<void> {
    return this.#worker.idle;
  }

  /**
   * Queues again, to resume, the jobs this sidecar held before it restarted and those no sidecar works on
   * (interrupted ones too, except those whose automatic retries ran out); starts the worker and the heartbeat.
   */
  start(): Promise<void> {
    return this.#worker.start();
  }

  async get(id: string): Promise<JobRecord> {
    const job = await this.#o.store.get(id);
    if (!job) throw new JobError(404, `no job '${id}'`);
    return job;
  }

  list(): Promise<JobRecord[]> {
    return this.#o.store.list();
  }

  /** A page of a job's history: points with an id past `after`, at most `limit`. */
  async history(id: string, after: number, limit: number): Promise<HistoryRow[]> {
    await this.get(id);
    return await this.#o.store.history(id, after, limit);
  }

  /** The id of the job's last history point (0 when none). */
  lastPoint(id: string): Promise<number> {
    return this.#o.store.lastPoint(id);
  }

  /** Queues a job; 429 when the queue is full. */
  async submit(request: JobRequest): Promise<JobRecord> {
    if ((await this.#o.store.list(["queued"])).length >= this.#o.maxQueued) {
      throw new JobError(429, `the queue is full (${this.#o.maxQueued} jobs waiting); try again later`);
    }
    if (request.attach && !this.#o.servers.some((s) => s.name === request.attach!.server)) {
      throw new JobError(404, `no server '${request.attach.server}' is configured`);
    }
    const job = await this.#o.store.create(crypto.randomUUID(), { ...request });
    this.#worker.pump();
    return job;
  }

  /**
   * Cancels a queued or running job; 409 when it already finished. A running one is asked to stop (it
   * checkpoints), and ended after the grace period if it does not.
   */
  async cancel(id: string): Promise<JobRecord> {
    const job = await this.get(id);
    if (FINAL_STATES.includes(job.state)) throw new JobError(409, `job '${id}' already ${job.state}`);
    if (this.#worker.cancel(id)) return job;
    // Queued or interrupted: cancelled at once. Running on another sidecar: its heartbeat sees the request.
    const asked = await this.#o.store.requestCancel(id);
    if (!asked) throw new JobError(409, `job '${id}' already ${(await this.get(id)).state}`);
    return this.#events.notify(asked);
  }

  /** Queues an interrupted or cancelled job again, to continue from its checkpoint; 409 otherwise. */
  async resume(id: string): Promise<JobRecord> {
    const job = await this.get(id);
    if (job.state !== "interrupted" && job.state !== "cancelled") {
      throw new JobError(409, `job '${id}' is ${job.state}; only interrupted or cancelled jobs resume`);
    }
    const queued = await this.#set(id, { state: "queued", resume: true, retries: 0, error: null });
    this.#worker.pump();
    return queued;
  }

  /**
   * Calls `listener` after every change of the job; returns the unsubscribe function. Changes made here arrive
   * at once; those of a job another sidecar runs are read from the store every heartbeat (at most every second).
   */
  subscribe(id: string, listener: Listener): () => void {
    return this.#events.subscribe(id, listener, {
      intervalMs: Math.min(this.#o.heartbeatMs, 1000),
      skip: () => this.#worker.closed || this.#worker.running === id,
    });
  }

  /**
   * Follows the reconcile loop: a job that ended `attach_failed` succeeds once the loop has its version serving on
   * a replica, with the loop's outcome as its attach result. Events are followed one after another;
   * {@link reconciling} settles when all so far were.
   */
  reconciled(e: ReconcileEvent): void {
    this.#reconciling = this.#reconciling
      .then(() => followReconcile(this.#o.store, e, (id, fields) => this.#set(id, fields)))
      .catch((err) => {
        console.error(`following a reconcile pass failed: ${err instanceof Error ? err.message : err}`);
      });
  }

  /** Settles once the reconcile events so far were followed. */
  get reconciling(): Promise<void> {
    return this.#reconciling;
  }

  /** Stops the running job (it checkpoints and becomes interrupted) and the worker. */
  async close(): Promise<void> {
    this.#worker.close();
    this.#events.close();
    await this.#worker.idle;
    await this.#reconciling;
  }

  async #set(id: string, fields: JobFields): Promise<JobRecord> {
    return this.#events.notify(await this.#o.store.update(id, fields));
  }
}

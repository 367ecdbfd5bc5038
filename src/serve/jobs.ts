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
 * Leases ({@link JobStore.claim}): a claimed job is held by this sidecar (`owner`) until its lease lapses; a
 * heartbeat renews it while the job runs and reads whether another sidecar asked to cancel it. The same tick takes
 * back the jobs no sidecar works on ({@link JobStore.recover}: a lapsed lease, its host died; or interrupted by a
 * stopped sidecar) and claims queued jobs submitted elsewhere. At start the sidecar takes back the jobs its
 * previous life held: on one host with SQLite, that is the whole of "jobs found running at start-up are queued
 * again to resume from their last checkpoint". Writes about a running job are fenced by the lease, so a sidecar
 * that lost it (cut off longer than the lease) stops its runner and overwrites nothing.
 *
 * @module
 */

import type { Device } from "../runtime/device.ts";
import { isAbsolute } from "node:path";
import type { ServerConfig } from "../../plugins/types.ts";
import { type Spawn, spawnRunner } from "./spawn.ts";
import { type JobRequest, requestOf, runJob, type Slot } from "./job_run.ts";
import { type Follower, followInStore, type JobChange } from "./follow.ts";
import type { AttachReport } from "./reconcile/operations.ts";
import type { ReconcileEvent } from "./reconcile/reconciler.ts";
import {
  type Attachment,
  FINAL_STATES,
  type HistoryRow,
  type JobFields,
  type JobRecord,
  leaseLost,
  LeaseLostError,
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

type Listener = (change: JobChange) => void;
type ManagerSettings = Required<JobManagerOptions>;

export { type JobChange, type JobRequest, RUNNER_DIED };

/** The queue and its one worker. */
export class JobManager {
  readonly #o: ManagerSettings;
  readonly #listeners = new Map<string, Set<Listener>>();
  /** Queued jobs whose model or data this host lacks: left to other sidecars. */
  readonly #elsewhere = new Set<string>();
  #slot: Slot | null = null;
  #ticker: ReturnType<typeof setInterval> | null = null;
  /** Subscriptions followed through the store (the job may run elsewhere); stopped at close. */
  readonly #followers = new Set<Follower>();
  #ticking = false;
  #closed = false;
  /** The worker loop is running; {@link #pump} asked for another claim while it was. */
  #busy = false;
  #wanted = false;
  /** Follow-ups of reconcile events, one after another. */
  #reconciling: Promise<void> = Promise.resolve();
  /** Settles when the worker is idle (for tests and shutdown). */
  idle: Promise<void> = Promise.resolve();

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
  }

  /** This sidecar's id in the store. */
  get owner(): string {
    return this.#o.owner;
  }

  get #leaseMs(): number {
    return 3 * this.#o.heartbeatMs;
  }

  /**
   * Queues again, to resume, the jobs this sidecar held before it restarted and those no sidecar works on
   * (interrupted ones too, except those whose automatic retries ran out); starts the worker and the heartbeat.
   */
  async start(): Promise<void> {
    for (const job of await this.#o.store.recover(this.#o.maxRetries, this.#o.owner)) this.#notify(job);
    this.#ticker = setInterval(() => void this.#tick(), this.#o.heartbeatMs);
    this.#pump();
  }

  /**
   * The heartbeat: renews the running job's lease (a lost one stops it; a cancel asked on another sidecar is
   * carried out here), takes back jobs no sidecar works on, and looks for queued work. A failing database is
   * logged, and the next tick tries again.
   */
  async #tick(): Promise<void> {
    if (this.#ticking || this.#closed) return;
    this.#ticking = true;
    const slot = this.#slot;
    try {
      if (slot && !slot.lost) {
        const beat = await this.#o.store.heartbeat(slot.id, this.#o.owner, this.#leaseMs);
        const current = this.#slot === slot; // it may have ended meanwhile
        if (current && !beat.held) this.#lose(slot);
        else if (current && beat.cancelRequested && !slot.cancelled) {
          slot.cancelled = true;
          this.#stop(slot);
        }
      }
      for (const job of await this.#o.store.recover(this.#o.maxRetries)) this.#notify(job);
      this.#pump();
    } catch (e) {
      console.error(
        `sidecar ${this.#o.owner}: heartbeat failed (${e instanceof Error ? e.message : e}); retrying`,
      );
    } finally {
      this.#ticking = false;
    }
  }

  /** The lease lapsed (this sidecar was cut off): another sidecar resumes the job; the runner here is ended. */
  #lose(slot: Slot): void {
    if (slot.lost) return;
    slot.lost = true;
    console.error(`job ${slot.id}: this sidecar lost its lease; another sidecar resumes it`);
    slot.runner?.kill("SIGKILL");
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
    this.#pump();
    return job;
  }

  /**
   * Cancels a queued or running job; 409 when it already finished. A running one is asked to stop (it
   * checkpoints), and ended after the grace period if it does not.
   */
  async cancel(id: string): Promise<JobRecord> {
    const job = await this.get(id);
    if (FINAL_STATES.includes(job.state)) throw new JobError(409, `job '${id}' already ${job.state}`);
    if (this.#slot?.id === id) {
      this.#slot.cancelled = true;
      this.#stop(this.#slot);
      return job;
    }
    // Queued or interrupted: cancelled at once. Running on another sidecar: its heartbeat sees the request.
    const asked = await this.#o.store.requestCancel(id);
    if (!asked) throw new JobError(409, `job '${id}' already ${(await this.get(id)).state}`);
    return this.#notify(asked);
  }

  /** Queues an interrupted or cancelled job again, to continue from its checkpoint; 409 otherwise. */
  async resume(id: string): Promise<JobRecord> {
    const job = await this.get(id);
    if (job.state !== "interrupted" && job.state !== "cancelled") {
      throw new JobError(409, `job '${id}' is ${job.state}; only interrupted or cancelled jobs resume`);
    }
    const queued = await this.#requeue(id, { retries: 0, error: null });
    this.#pump();
    return queued;
  }

  /**
   * Calls `listener` after every change of the job; returns the unsubscribe function. Changes made here arrive
   * at once; those of a job another sidecar runs are read from the store every heartbeat (at most every second).
   */
  subscribe(id: string, listener: Listener): () => void {
    const follower = followInStore(this.#o.store, id, listener, {
      intervalMs: Math.min(this.#o.heartbeatMs, 1000),
      skip: () => this.#closed || this.#slot?.id === id,
    });
    const mine: Listener = (change) => (follower.saw(change), listener(change));
    const set = this.#listeners.get(id) ?? new Set();
    this.#listeners.set(id, set.add(mine));
    this.#followers.add(follower);
    return () => (follower.stop(), this.#followers.delete(follower), set.delete(mine));
  }

  /**
   * Follows the reconcile loop: a job that ended `attach_failed` succeeds once the loop has its version serving on
   * a replica, with the loop's outcome as its attach result. Events are followed one after another;
   * {@link reconciling} settles when all so far were.
   */
  reconciled(e: ReconcileEvent): void {
    this.#reconciling = this.#reconciling.then(() => this.#followReconcile(e)).catch((err) => {
      console.error(`following a reconcile pass failed: ${err instanceof Error ? err.message : err}`);
    });
  }

  /** Settles once the reconcile events so far were followed. */
  get reconciling(): Promise<void> {
    return this.#reconciling;
  }

  async #followReconcile(e: ReconcileEvent): Promise<void> {
    for (const outcome of e.outcomes) {
      if (!outcome.ok || outcome.version === null) continue;
      const job = await this.#o.store.get(outcome.version);
      if (job?.state !== "attach_failed") continue;
      const req = requestOf(job);
      if (req.attach?.server !== e.server || (req.attach.name ?? req.name) !== outcome.name) continue;
      const attach = {
        server: e.server,
        adapter: outcome.name,
        version: outcome.version,
        complete: false,
        desired: true,
        replicas: [{ url: e.url, ...outcome }],
        attempts: outcome.attempts ?? 1,
        millis: outcome.millis ?? e.millis,
        by: "the reconcile loop, after the attach at the job's end failed",
      };
      await this.#set(job.id, { state: "succeeded", result: { ...job.result, attach }, error: null });
    }
  }

  /** Stops the running job (it checkpoints and becomes interrupted) and the worker. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#ticker !== null) clearInterval(this.#ticker);
    for (const follower of this.#followers) follower.stop();
    if (this.#slot) this.#stop(this.#slot);
    await this.idle;
    await this.#reconciling;
  }

  /** Asks the runner to stop, then ends it: SIGTERM after the grace period, SIGKILL after another. */
  #stop(slot: Slot): void {
    if (slot.stopping || !slot.runner) return;
    const runner = slot.runner, grace = this.#o.stopGraceMs;
    runner.stop();
    slot.stopping = [
      setTimeout(() => runner.kill("SIGTERM"), grace),
      setTimeout(() => runner.kill("SIGKILL"), 2 * grace),
    ];
  }

  #requeue(id: string, fields: { retries?: number; error?: JobRecord["error"] } = {}): Promise<JobRecord> {
    return this.#set(id, { state: "queued", resume: true, ...fields });
  }

  async #set(id: string, fields: JobFields, point?: HistoryRow): Promise<JobRecord> {
    return this.#notify(await this.#o.store.update(id, fields), point);
  }

  /** A change to the job `slot` runs, fenced by its lease: throws {@link LeaseLostError} once it is lost. */
  async #own(slot: Slot, fields: JobFields, point?: HistoryRow): Promise<JobRecord> {
    if (slot.lost) throw leaseLost(slot.id, this.#o.owner);
    return this.#notify(await this.#o.store.update(slot.id, fields, this.#o.owner), point);
  }

  #notify(job: JobRecord, point?: HistoryRow): JobRecord {
    for (const l of this.#listeners.get(job.id) ?? []) {
      // A failing subscriber (a stream whose client left, a test's probe) is its own problem, never the job's.
      try {
        l(point ? { job, point } : { job });
      } catch (e) {
        console.error(`job ${job.id}: a subscriber failed: ${e instanceof Error ? e.message : e}`);
      }
    }
    return job;
  }

  /**
   * Starts the worker when it is free: it takes queued jobs one by one through the store's claim (the only way a
   * job starts) until none is left.
   */
  #pump(): void {
    this.#wanted = true;
    if (this.#busy || this.#closed) return;
    this.#busy = true;
    this.idle = this.#work();
  }

  async #work(): Promise<void> {
    try {
      while (!this.#closed) {
        this.#wanted = false;
        const next = await this.#o.store.claim({
          owner: this.#o.owner,
          leaseMs: this.#leaseMs,
          devices: [...new Set([this.#o.device, "cpu"])],
          exclude: [...this.#elsewhere],
        });
        if (next && !(await this.#canServe(next))) continue;
        if (next) await this.#take(next);
        else if (!this.#wanted) return; // nothing was submitted while the claim ran
      }
    } finally {
      this.#busy = false; // at once, before anything else runs: a submit from now on starts the worker
    }
  }

  /**
   * Whether this host has the job's model and data (a local path; a Hub id is downloaded by the job). One it lacks
   * goes back to the queue for another sidecar, and this one claims it no more.
   */
  async #canServe(job: JobRecord): Promise<boolean> {
    const req = requestOf(job);
    const paths = [...(isAbsolute(req.model) ? [req.model] : []), req.data];
    const missing = (await Promise.all(paths.map((p) => Deno.stat(p).then(() => null, () => p)))).find((p) =>
      p
    );
    if (!missing) return true;
    this.#elsewhere.add(job.id);
    if (this.#elsewhere.size > 1000) this.#elsewhere.delete(this.#elsewhere.values().next().value!);
    console.error(`job ${job.id}: ${missing} is not on this host; left in the queue for another sidecar`);
    this.#notify(await this.#o.store.update(job.id, { state: "queued" }, this.#o.owner));
    return false;
  }

  /** Runs a claimed job to its end; whatever goes wrong fails this job only, and the sidecar keeps serving. */
  async #take(next: JobRecord): Promise<void> {
    const slot: Slot = this.#slot = {
      id: next.id,
      runner: null,
      cancelled: false,
      stopping: null,
      lost: false,
    };
    this.#notify(next);
    try {
      await runJob(
        {
          ...this.#o,
          own: (fields, point) => this.#own(slot, fields, point),
          closed: () => this.#closed,
        },
        next,
        slot,
      );
    } catch (e) {
      slot.runner?.kill("SIGKILL");
      if (e instanceof LeaseLostError) this.#lose(slot); // another sidecar resumes it: nothing to record here
      else {
        const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        await this.#own(slot, { state: "failed", error: { code: "internal", message } })
          .catch((e2) => console.error(`job ${next.id}: could not record its failure (${message}): ${e2}`));
      }
    } finally {
      for (const t of slot.stopping ?? []) clearTimeout(t);
      this.#slot = null;
    }
  }
}

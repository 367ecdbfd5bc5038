/**
 * The job manager's one worker: it takes queued jobs one by one through the store's atomic claim (the only way a
 * job starts), runs each to its end ({@link ./job_run.ts}), and holds the job's lease while it runs.
 *
 * Leases ({@link JobStore.claim}): a claimed job is held by this sidecar (`owner`) until its lease lapses; a
 * heartbeat renews it while the job runs and reads whether another sidecar asked to cancel it. The same tick takes
 * back the jobs no sidecar works on ({@link JobStore.recover}: a lapsed lease, its host died; or interrupted by a
 * stopped sidecar) and claims queued jobs submitted elsewhere. Writes about a running job are fenced by the lease,
 * so a sidecar that lost it (cut off longer than the lease) stops its runner and overwrites nothing. Stopping asks
 * the runner to stop (it checkpoints), then ends it: SIGTERM after a grace period, SIGKILL after another.
 *
 * @module
 */

import { isAbsolute } from "node:path";
import { requestOf, type RunContext, runJob, type Slot } from "./job_run.ts";
import { type HistoryRow, type JobFields, type JobRecord, leaseLost, LeaseLostError } from "./store/mod.ts";

/** What the worker needs: what running a job needs (less what the worker adds), and its lease settings. */
export interface WorkerSettings extends Omit<RunContext, "own" | "closed"> {
  /** This sidecar's id, which holds the leases of the jobs it runs. */
  readonly owner: string;
  /** How often the running job's lease is renewed and the shared queue checked; a lease lasts three. */
  readonly heartbeatMs: number;
  /** How long a runner asked to stop may take before it gets SIGTERM, and again before SIGKILL. */
  readonly stopGraceMs: number;
}

/** Claims queued jobs and runs them, one at a time, each under a lease this sidecar renews. */
export class JobWorker {
  readonly #o: WorkerSettings;
  /** Tells a job's subscribers of its change; returns the job. */
  readonly #notify: (job: JobRecord, point?: HistoryRow) => JobRecord;
  /** Queued jobs whose model or data this host lacks: left to other sidecars. */
  readonly #elsewhere = new Set<string>();
  #slot: Slot | null = null;
  #ticker: ReturnType<typeof setInterval> | null = null;
  #ticking = false;
  #closed = false;
  /** The worker loop is running; {@link pump} asked for another claim while it was. */
  #busy = false;
  #wanted = false;
  #idle: Promise<void> = Promise.resolve();

  constructor(settings: WorkerSettings, notify: (job: JobRecord, point?: HistoryRow) => JobRecord) {
    this.#o = settings;
    this.#notify = notify;
  }

  /** Settles when the worker is idle (for tests and shutdown). */
  get idle(): Promise<void> {
    return this.#idle;
  }

  /** The id of the job running here, or null. */
  get running(): string | null {
    return this.#slot?.id ?? null;
  }

  /** {@link close} was called: no job starts from now on. */
  get closed(): boolean {
    return this.#closed;
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
    this.pump();
  }

  /** Cancels job `id` when it runs here (its runner is asked to stop); false when it does not. */
  cancel(id: string): boolean {
    const slot = this.#slot;
    if (slot?.id !== id) return false;
    slot.cancelled = true;
    this.#stop(slot);
    return true;
  }

  /** Stops the heartbeat and the worker; the running job is asked to stop (it checkpoints). */
  close(): void {
    this.#closed = true;
    if (this.#ticker !== null) clearInterval(this.#ticker);
    if (this.#slot) this.#stop(this.#slot);
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
      this.pump();
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

  /** A change to the job `slot` runs, fenced by its lease: throws {@link LeaseLostError} once it is lost. */
  async #own(slot: Slot, fields: JobFields, point?: HistoryRow): Promise<JobRecord> {
    if (slot.lost) throw leaseLost(slot.id, this.#o.owner);
    return this.#notify(await this.#o.store.update(slot.id, fields, this.#o.owner), point);
  }

  /**
   * Starts the worker when it is free: it takes queued jobs one by one through the store's claim (the only way a
   * job starts) until none is left.
   */
  pump(): void {
    this.#wanted = true;
    if (this.#busy || this.#closed) return;
    this.#busy = true;
    this.#idle = this.#work();
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

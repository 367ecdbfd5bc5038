/**
 * The job manager: a FIFO queue with one training worker, durable state in a {@link JobStore}, each job run by a
 * child process ({@link ./runner.ts}), progress fanned out to subscribers (SSE), and, when the job asks for it, the
 * adapter made desired on its server and rolled out to every replica ({@link ./reconcile/mod.ts}).
 *
 * Each job writes its adapter to `<dataDir>/adapters/<name>/<job id>`: a new folder per version, because servers
 * re-read an evicted adapter from its path. Jobs found running at start-up are marked interrupted and queued again
 * to resume from their last checkpoint.
 *
 * @module
 */

import { type HistoryPoint, historyPoint, type ProgressEvent } from "../flexora/mod.ts";
import { readAdapterConfig } from "../model/peft.ts";
import type { Device } from "../runtime/device.ts";
import { join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import type { ServerConfig } from "../../plugins/types.ts";
import type { Attachment } from "./reconcile/desired.ts";
import type { AttachReport } from "./reconcile/operations.ts";
import type { RunnerEvent, RunnerSpec } from "./runner.ts";
import { ACTIVE_STATES, FINAL_STATES, type JobRecord, type JobState, type JobStore } from "./store.ts";

/** A validated job request. */
export interface JobRequest {
  readonly model: string;
  readonly data: string;
  /** Adapter name (the one name rule, `isSafeName`). */
  readonly name: string;
  readonly options: Record<string, unknown>;
  readonly padLayers?: boolean;
  readonly attach?: { readonly server: string; readonly name?: string };
}

/** A running child. */
export interface RunnerHandle {
  readonly events: AsyncIterable<RunnerEvent>;
  /** Asks the run to stop between steps (it checkpoints first). */
  stop(): void;
  readonly exited: Promise<number>;
}

/** Starts a runner for a spec file. */
export type Spawn = (specFile: string) => RunnerHandle;

/** Thrown for requests the manager refuses; `status` is the HTTP status to answer with. */
export class JobError extends Error {
  override name = "JobError";
  readonly status: 404 | 409 | 429;
  constructor(status: 404 | 409 | 429, message: string) {
    super(message);
    this.status = status;
  }
}

const RUNNER = fromFileUrl(new URL("./runner.ts", import.meta.url));
const ROOT = fromFileUrl(new URL("../../", import.meta.url));

/** Runs `runner.ts` with Deno in a child process, events read from its stdout. */
export function spawnRunner(specFile: string): RunnerHandle {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-ffi",
      "--allow-sys",
      "--allow-net", // a Hub model is downloaded by the job (only when the sidecar allows Hub ids)
      RUNNER,
      specFile,
    ],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  async function* events(): AsyncIterable<RunnerEvent> {
    let buffered = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) yield JSON.parse(line) as RunnerEvent;
      }
    }
  }
  return {
    events: events(),
    stop: () => void writer.write(new TextEncoder().encode("stop\n")).catch(() => {}),
    exited: child.status.then((s) => (writer.close().catch(() => {}), s.code)),
  };
}

/** Options of a {@link JobManager}. */
export interface JobManagerOptions {
  readonly store: JobStore;
  readonly dataDir: string;
  readonly servers: readonly ServerConfig[];
  /**
   * Makes an attachment desired and rolls it out to every replica of its server (the reconciler's
   * `attachEverywhere`); throws when no replica serves it.
   */
  readonly attach: (a: Attachment) => Promise<AttachReport>;
  /** Queued jobs at most before submissions get 429 (default 16). */
  readonly maxQueued?: number;
  /** Where jobs train: a device name the runner resolves (default "cpu"). */
  readonly device?: Device;
  readonly spawn?: Spawn;
}

type Listener = (job: JobRecord) => void;
type ManagerSettings = Required<JobManagerOptions>;

/** Stage of a progress event → job state. */
const STAGE_STATE: Record<string, JobState> = {
  download: "downloading",
  search: "searching",
  retrain: "retraining",
  evaluate: "retraining",
  export: "exporting",
};

/** Keeps at most `max` points: past that, every other point is dropped (older points end up sparser). */
function capped<T>(points: T[], max = 2000): T[] {
  return points.length <= max ? points : points.filter((_, i) => i % 2 === 0);
}

/** The queue and its one worker. */
export class JobManager {
  readonly #o: ManagerSettings;
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #resume = new Set<string>();
  /** The job the worker holds, from its claim until its runner's end; null when the worker is idle. */
  #slot: { readonly id: string; runner: RunnerHandle | null; cancelled: boolean } | null = null;
  #closed = false;
  /** Settles when the worker is idle (for tests and shutdown). */
  idle: Promise<void> = Promise.resolve();

  constructor(options: JobManagerOptions) {
    this.#o = {
      ...options,
      maxQueued: options.maxQueued ?? 16,
      device: options.device ?? "cpu",
      spawn: options.spawn ?? spawnRunner,
    };
  }

  /** Marks jobs found running as interrupted and queues them to resume; starts the worker. */
  start(): void {
    for (const job of this.#o.store.list([...ACTIVE_STATES, "interrupted"])) {
      this.#o.store.update(job.id, { state: "interrupted" });
      this.#requeue(job.id);
    }
    this.#pump();
  }

  get(id: string): JobRecord {
    const job = this.#o.store.get(id);
    if (!job) throw new JobError(404, `no job '${id}'`);
    return job;
  }

  list(): JobRecord[] {
    return this.#o.store.list();
  }

  /** Queues a job; 429 when the queue is full. */
  submit(request: JobRequest): JobRecord {
    if (this.#o.store.list(["queued"]).length >= this.#o.maxQueued) {
      throw new JobError(429, `the queue is full (${this.#o.maxQueued} jobs waiting); try again later`);
    }
    if (request.attach && !this.#o.servers.some((s) => s.name === request.attach!.server)) {
      throw new JobError(404, `no server '${request.attach.server}' is configured`);
    }
    const job = this.#o.store.create(crypto.randomUUID(), { ...request });
    this.#pump();
    return job;
  }

  /** Cancels a queued or running job (a running one checkpoints first); 409 when it already finished. */
  cancel(id: string): JobRecord {
    const job = this.get(id);
    if (FINAL_STATES.includes(job.state)) throw new JobError(409, `job '${id}' already ${job.state}`);
    if (this.#slot?.id === id) {
      this.#slot.cancelled = true;
      this.#slot.runner?.stop();
      return job;
    }
    return this.#set(id, { state: "cancelled" });
  }

  /** Queues an interrupted or cancelled job again, to continue from its checkpoint; 409 otherwise. */
  resume(id: string): JobRecord {
    const job = this.get(id);
    if (job.state !== "interrupted" && job.state !== "cancelled") {
      throw new JobError(409, `job '${id}' is ${job.state}; only interrupted or cancelled jobs resume`);
    }
    const queued = this.#requeue(id);
    this.#pump();
    return queued;
  }

  /** Calls `listener` with the job after every change; returns the unsubscribe function. */
  subscribe(id: string, listener: Listener): () => void {
    const set = this.#listeners.get(id) ?? new Set();
    this.#listeners.set(id, set.add(listener));
    return () => set.delete(listener);
  }

  /** Stops the running job (it checkpoints and becomes interrupted) and the worker. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#slot?.runner?.stop();
    await this.idle;
  }

  #requeue(id: string): JobRecord {
    this.#resume.add(id);
    return this.#set(id, { state: "queued", error: null });
  }

  #set(id: string, fields: Parameters<JobStore["update"]>[1]): JobRecord {
    return this.#notify(this.#o.store.update(id, fields));
  }

  #notify(job: JobRecord): JobRecord {
    for (const l of this.#listeners.get(job.id) ?? []) l(job);
    return job;
  }

  /** Starts the next queued job when the worker is free: the store's claim is the only way a job starts. */
  #pump(): void {
    if (this.#slot || this.#closed) return;
    const next = this.#o.store.claim();
    if (!next) return;
    const slot = this.#slot = { id: next.id, runner: null, cancelled: false };
    this.#notify(next);
    this.idle = this.#run(next, slot)
      .catch((e) => {
        // Whatever went wrong fails this job only; the sidecar keeps serving.
        const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        this.#set(next.id, { state: "failed", error: { code: "internal", message } });
      })
      .finally(() => {
        this.#slot = null;
        this.#pump();
      });
  }

  async #run(job: JobRecord, slot: { runner: RunnerHandle | null; cancelled: boolean }): Promise<void> {
    const req = job.request as unknown as JobRequest;
    const dir = join(this.#o.dataDir, "jobs", job.id);
    const out = join(this.#o.dataDir, "adapters", req.name, job.id);
    await Deno.mkdir(dir, { recursive: true });
    const spec: RunnerSpec = {
      model: req.model,
      data: req.data,
      options: req.options,
      out,
      checkpointDir: join(dir, "checkpoints"),
      resume: this.#resume.delete(job.id),
      padLayers: req.padLayers,
      device: this.#o.device,
    };
    await Deno.writeTextFile(join(dir, "spec.json"), JSON.stringify(spec));
    if (slot.cancelled || this.#closed) {
      this.#set(job.id, { state: slot.cancelled ? "cancelled" : "interrupted" });
      return;
    }
    const runner = slot.runner = this.#o.spawn(join(dir, "spec.json"));
    let history = (job.result?.history as HistoryPoint[] | undefined) ?? [];
    const warnings: string[] = [];
    let summary: Record<string, unknown> | null = null, failure: RunnerEvent | null = null;
    for await (const e of runner.events) {
      if (e.type === "progress") {
        const p = e.event as unknown as ProgressEvent;
        const point = historyPoint(p);
        if (point) {
          history.push(point);
          history = capped(history);
        }
        this.#set(job.id, {
          state: STAGE_STATE[p.stage] ?? "retraining",
          progress: e.event,
          result: { history, warnings },
        });
      } else if (e.type === "warning") warnings.push(e.message);
      else if (e.type === "result") summary = e.summary;
      else failure = e;
    }
    await runner.exited;
    if (summary) {
      return await this.#finish(job.id, req, {
        ...summary,
        history,
        warnings,
        adapterPath: out,
      });
    }
    if (failure?.type === "stopped") {
      this.#set(job.id, { state: slot.cancelled ? "cancelled" : "interrupted" });
      return;
    }
    const message = failure?.type === "error"
      ? `${failure.name}: ${failure.message}`
      : "the training process ended unexpectedly";
    this.#set(job.id, { state: "failed", error: { code: "training_failed", message } });
  }

  async #finish(id: string, req: JobRequest, result: Record<string, unknown>): Promise<void> {
    if (!req.attach) {
      this.#set(id, { state: "succeeded", result });
      return;
    }
    // Recorded as desired state, so a retrained version rolls out through the same swap path as an attach.
    const attachment: Attachment = {
      server: req.attach.server,
      name: req.attach.name ?? req.name,
      adapter: req.name,
      version: id,
      path: result.adapterPath as string,
      rank: (await readAdapterConfig(result.adapterPath as string)).r,
    };
    this.#set(id, { state: "attaching", result });
    try {
      const attach = await this.#o.attach(attachment);
      this.#set(id, { state: "succeeded", result: { ...result, attach } });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      this.#set(id, { state: "attach_failed", result, error: { code: "attach_failed", message } });
    }
  }
}

/**
 * One claimed job, from its spec to its end: the runner process started ({@link ./spawn.ts}), its events turned
 * into job states, history points and (in a shared store) checkpoints, and its result kept, attached when asked,
 * or its death recorded for an automatic resumption. The {@link ./jobs.ts} manager claims, heartbeats and stops;
 * every write here goes through its lease-fenced `own`.
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import { z } from "zod";
import { historyPoint } from "../flexora/mod.ts";
import { readAdapterConfig } from "../model/peft.ts";
import type { Device } from "../runtime/device.ts";
import { type RunnerEvent, type RunSummary, writeSpec } from "./protocol.ts";
import type { AttachReport } from "./reconcile/operations.ts";
import type { RunnerExit, RunnerHandle, Spawn } from "./spawn.ts";
import { keepArtifact, readCheckpoints, readFolder, restoreCheckpoints } from "./store/artifacts.ts";
import {
  type Attachment,
  type HistoryRow,
  type JobFields,
  type JobRecord,
  type JobState,
  RUNNER_DIED,
  type Store,
} from "./store/mod.ts";

const JobRequestSchema = z.object({
  model: z.string(),
  data: z.string(),
  name: z.string(),
  options: z.record(z.string(), z.unknown()),
  padLayers: z.boolean().optional(),
  /** The concrete device the job trains on (resolved at submit); absent in older records: the manager's. */
  device: z.enum(["cpu", "webgpu", "cuda"]).optional(),
  attach: z.object({ server: z.string(), name: z.string().optional() }).optional(),
});

/** A validated job request. */
export type JobRequest = z.infer<typeof JobRequestSchema>;

/** The worker's hold on one job, from its claim until its runner's end. */
export interface Slot {
  readonly id: string;
  runner: RunnerHandle | null;
  cancelled: boolean;
  /** Set once the runner was asked to stop; its escalation timers. */
  stopping: ReturnType<typeof setTimeout>[] | null;
  /** The lease lapsed and another sidecar may have the job: nothing more is written about it here. */
  lost: boolean;
}

/** Stage of a progress event → job state. */
const STAGE_STATE: Record<string, JobState> = {
  search: "searching",
  retrain: "retraining",
  evaluate: "retraining",
  export: "exporting",
};

/** What running a job needs from its manager. */
export interface RunContext {
  readonly store: Store;
  readonly dataDir: string;
  /** Where jobs that name no device train. */
  readonly device: Device;
  readonly spawn: Spawn;
  /** Automatic resumptions of a job whose runner died. */
  readonly maxRetries: number;
  /** Makes an attachment desired and rolls it out (the reconciler's `attachEverywhere`). */
  readonly attach: (a: Attachment) => Promise<AttachReport>;
  /** A change to the job, fenced by its lease (throws once the lease is lost); subscribers are told. */
  readonly own: (fields: JobFields, point?: HistoryRow) => Promise<JobRecord>;
  /** The manager is closing: a job not yet started is left interrupted. */
  readonly closed: () => boolean;
}

export async function runJob(ctx: RunContext, job: JobRecord, slot: Slot): Promise<void> {
  const req = requestOf(job);
  const dir = join(ctx.dataDir, "jobs", job.id);
  const out = join(ctx.dataDir, "adapters", req.name, job.id);
  const checkpointDir = join(dir, "checkpoints");
  // A shared store may hold checkpoints another host wrote: the job continues from the newest.
  const restored = ctx.store.shared &&
    await restoreCheckpoints(ctx.store.artifacts, job.id, checkpointDir);
  await Deno.mkdir(dir, { recursive: true });
  const specFile = join(dir, "spec.json");
  await writeSpec(specFile, {
    model: req.model,
    data: req.data,
    options: req.options,
    out,
    checkpointDir,
    resume: job.resume || restored,
    padLayers: req.padLayers,
    device: req.device ?? ctx.device,
  });
  if (slot.cancelled || ctx.closed()) {
    await ctx.own({ state: slot.cancelled ? "cancelled" : "interrupted" });
    return;
  }
  // The submit route confines a local model to an absolute path; anything else is a Hub id the job downloads.
  const runner = slot.runner = ctx.spawn(specFile, { network: !isAbsolute(req.model) });
  const warnings: string[] = (job.result?.warnings as string[] | undefined) ?? [];
  let summary: RunSummary | null = null, last: RunnerEvent | null = null;
  for await (const e of runner.events) {
    if (e.type === "download") {
      const { file, received, total, elapsed, eta } = e;
      const progress = { stage: "download", file, step: received, total, elapsed, eta };
      await ctx.own({ state: "downloading", progress });
    } else if (e.type === "start") {
      // A resumed stage starts from its checkpoint: the points after it will be made again.
      await ctx.store.rewindHistory(job.id, e.stage, e.step);
      await ctx.own({ state: STAGE_STATE[e.stage] });
    } else if (e.type === "checkpoint") {
      if (ctx.store.shared) {
        await keepArtifact(ctx.store, "checkpoint", job.id, () => readCheckpoints(checkpointDir));
      }
    } else if (e.type === "progress") {
      const point = historyPoint(e.event);
      const row = point ? await ctx.store.addPoint(job.id, point) : undefined;
      await ctx.own({ state: STAGE_STATE[e.event.stage], progress: e.event }, row);
    } else if (e.type === "warning") {
      warnings.push(e.message);
      await ctx.own({ result: { warnings } });
    } else if (e.type === "result") summary = e.summary;
    else last = e;
  }
  const exit = await runner.exited;
  if (summary) return await finish(ctx, req, { ...summary, warnings, adapterPath: out }, job.id);
  if (slot.cancelled) return void await ctx.own({ state: "cancelled" });
  if (last?.type === "stopped") return void await ctx.own({ state: "interrupted" });
  if (last?.type === "error") {
    const message = `${last.name}: ${last.message}`;
    return void await ctx.own({ state: "failed", error: { code: "training_failed", message } });
  }
  await died(ctx, slot, exit);
}

/** A runner that ended without a word: the job is interrupted, and resumed while retries are left. */
async function died(ctx: RunContext, slot: Slot, exit: RunnerExit): Promise<void> {
  const id = slot.id;
  const how = exit.signal
    ? `killed by ${exit.signal}${exit.signal === "SIGKILL" ? " (the out-of-memory killer sends it)" : ""}`
    : `ended with code ${exit.code} before its result`;
  const retries = (await ctx.store.get(id))!.retries, max = ctx.maxRetries;
  if (ctx.closed() || retries >= max) {
    const what = ctx.closed() ? "" : `; it was resumed ${max} times already: resume it by hand`;
    const error = { code: RUNNER_DIED, message: `the training process was ${how}${what}` };
    return void await ctx.own({ state: "interrupted", error });
  }
  const message = `the training process was ${how}; resuming from its checkpoint (retry ${
    retries + 1
  } of ${max})`;
  await ctx.own({
    state: "queued",
    resume: true,
    retries: retries + 1,
    error: { code: RUNNER_DIED, message },
  });
}

/** The runner's result: the adapter kept (in a shared store too) and, when asked, attached. */
async function finish(
  ctx: RunContext,
  req: JobRequest,
  result: Record<string, unknown> & { adapterPath: string },
  id: string,
): Promise<void> {
  if (ctx.store.shared) {
    // Any sidecar can serve the adapter now; the checkpoints are done with.
    await keepArtifact(ctx.store, "adapter", `${req.name}/${id}`, () => readFolder(result.adapterPath));
    await ctx.store.artifacts.delete("checkpoint", id).catch(() => {});
  }
  if (!req.attach) {
    await ctx.own({ state: "succeeded", result, error: null });
    return;
  }
  // Recorded as desired state, so a retrained version rolls out through the same swap path as an attach.
  const attachment: Attachment = {
    server: req.attach.server,
    name: req.attach.name ?? req.name,
    adapter: req.name,
    version: id,
    path: result.adapterPath,
    rank: (await readAdapterConfig(result.adapterPath)).r,
  };
  await ctx.own({ state: "attaching", result, error: null });
  try {
    const attach = await ctx.attach(attachment);
    await ctx.own({ state: "succeeded", result: { ...result, attach } });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    await ctx.own({ state: "attach_failed", result, error: { code: "attach_failed", message } });
  }
}

/** A stored job's request, checked. */
export function requestOf(job: JobRecord): JobRequest {
  const checked = JobRequestSchema.safeParse(job.request);
  if (!checked.success) {
    throw new Error(`job ${job.id}: its stored request is malformed (${checked.error.issues[0].message})`);
  }
  return checked.data;
}

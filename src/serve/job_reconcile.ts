/**
 * A job that ended `attach_failed` follows the reconcile loop ({@link ./reconcile/reconciler.ts}): once the loop
 * has the job's version serving on a replica of the job's server, the job succeeds, with the loop's outcome as its
 * attach result.
 *
 * @module
 */

import { requestOf } from "./job_run.ts";
import type { ReconcileEvent } from "./reconcile/reconciler.ts";
import type { JobFields, JobRecord, JobStore } from "./store/mod.ts";

/**
 * Marks succeeded each job of reconcile pass `e` whose version ended `attach_failed` and now serves; `set` writes
 * a job's change (and tells its subscribers).
 */
export async function followReconcile(
  store: JobStore,
  e: ReconcileEvent,
  set: (id: string, fields: JobFields) => Promise<JobRecord>,
): Promise<void> {
  for (const outcome of e.outcomes) {
    if (!outcome.ok || outcome.version === null) continue;
    const job = await store.get(outcome.version);
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
    await set(job.id, { state: "succeeded", result: { ...job.result, attach }, error: null });
  }
}

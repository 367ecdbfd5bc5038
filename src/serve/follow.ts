/**
 * Following a job through the store: the changes of a job another sidecar runs reach this sidecar's subscribers
 * (the event stream) by reading the job's row and its new history points every interval. Polling rather than
 * LISTEN/NOTIFY: one indexed read per follower, no connection held per stream, the same on SQLite, and unchanged
 * through a database restart (docs/scale.md).
 *
 * @module
 */

import type { HistoryRow, JobRecord, JobStore } from "./store/mod.ts";

/**
 * One change of a job: the record, and the history point the change added, if any (`points`: several, for a job
 * another sidecar runs, read from the store at once).
 */
export interface JobChange {
  readonly job: JobRecord;
  readonly point?: HistoryRow;
  readonly points?: readonly HistoryRow[];
}

/** A job followed through the store. */
export interface Follower {
  /** A change delivered another way (in this process): the poll does not send it again. */
  saw(change: JobChange): void;
  stop(): void;
}

/**
 * Reads job `id` every `intervalMs` (unless `skip()`: the job runs here and its changes arrive at once) and calls
 * `listener` with the record and the points added since the last change seen. A failing read is logged and tried
 * again at the next interval.
 */
export function followInStore(
  store: JobStore,
  id: string,
  listener: (change: JobChange) => void,
  options: { readonly intervalMs: number; readonly skip: () => boolean },
): Follower {
  let seen = { at: "", point: -1 };
  // Asked now, so no point made after the subscription is missed (the caller reads its snapshot after).
  const base = store.lastPoint(id);
  base.catch(() => {});
  let polling = false;
  const timer = setInterval(async () => {
    if (polling || options.skip()) return;
    polling = true;
    try {
      const job = await store.get(id);
      if (!job || job.updatedAt === seen.at) return;
      if (seen.point < 0) seen.point = await base;
      const points = await store.history(id, seen.point, -1);
      seen = { at: job.updatedAt, point: points.at(-1)?.id ?? seen.point };
      listener({ job, points });
    } catch (e) {
      console.error(`job ${id}: following it failed (${e instanceof Error ? e.message : e}); retrying`);
    } finally {
      polling = false;
    }
  }, options.intervalMs);
  return {
    saw: (change) => void (seen = { at: change.job.updatedAt, point: change.point?.id ?? seen.point }),
    stop: () => clearInterval(timer),
  };
}

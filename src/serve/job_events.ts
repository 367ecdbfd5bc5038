/**
 * The job manager's subscribers: every change of a job is fanned out to its listeners (the event stream, tests'
 * probes) at once when it is made here, and read from the store ({@link ./follow.ts}) when another sidecar runs
 * the job. A failing listener is its own problem, never the job's.
 *
 * @module
 */

import { type Follower, followInStore, type JobChange } from "./follow.ts";
import type { HistoryRow, JobRecord, JobStore } from "./store/mod.ts";

/** Called with each change of a job. */
export type Listener = (change: JobChange) => void;

/** The listeners of each job, and the followers that read changes made elsewhere. */
export class JobEvents {
  readonly #store: JobStore;
  readonly #listeners = new Map<string, Set<Listener>>();
  /** Subscriptions followed through the store (the job may run elsewhere); stopped at close. */
  readonly #followers = new Set<Follower>();

  constructor(store: JobStore) {
    this.#store = store;
  }

  /**
   * Calls `listener` after every change of job `id`; returns the unsubscribe function. Changes passed to
   * {@link notify} arrive at once; the store is read every `intervalMs` unless `skip()` (the job runs here).
   */
  subscribe(
    id: string,
    listener: Listener,
    options: { readonly intervalMs: number; readonly skip: () => boolean },
  ): () => void {
    const follower = followInStore(this.#store, id, listener, options);
    const mine: Listener = (change) => (follower.saw(change), listener(change));
    const set = this.#listeners.get(id) ?? new Set();
    this.#listeners.set(id, set.add(mine));
    this.#followers.add(follower);
    return () => (follower.stop(), this.#followers.delete(follower), set.delete(mine));
  }

  /** Tells the job's listeners of its change (and the history point it added); returns the job. */
  notify(job: JobRecord, point?: HistoryRow): JobRecord {
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

  /** Stops reading the store for every subscription. */
  close(): void {
    for (const follower of this.#followers) follower.stop();
  }
}

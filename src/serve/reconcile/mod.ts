/**
 * Adapters as desired state: the `desired` table (in the store, {@link ../store/types.ts}), the per-replica pass ({@link ./pass.ts}),
 * the loop that runs it ({@link ./reconciler.ts}, timing in {@link ./schedule.ts}), and attach and detach on every
 * replica ({@link ./operations.ts}).
 *
 * @module
 */

export type { Attachment, Desired, DesiredStore } from "../store/mod.ts";
export { Mutex } from "./lock.ts";
export {
  attachEverywhere,
  type AttachReport,
  detachEverywhere,
  type DetachReport,
  NotAttachedError,
} from "./operations.ts";
export { isTransient } from "./pass.ts";
export { type Action, type Outcome, type ReplicaReport, ReplicaState } from "./replica.ts";
export {
  type ReconcileEvent,
  Reconciler,
  type ReconcilerOptions,
  type ReplicaOutcome,
  type ServerState,
} from "./reconciler.ts";
export {
  type Clock,
  DEFAULT_RECONCILE,
  nextDelay,
  realClock,
  type ReconcileSettings,
  reconcileSettings,
} from "./schedule.ts";

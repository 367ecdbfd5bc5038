/**
 * What the sidecar knows about one replica: the adapter versions it verified there, versions the replica refused
 * for good, its pass history (last success, failures in a row, next attempt, last error) and counters for
 * `/metrics`; and the report `GET /v1/servers` shows.
 *
 * @module
 */

import type { Attachment } from "../store/mod.ts";

/** A version verified on the replica. */
export interface Known {
  readonly adapter: string;
  readonly version: string;
  readonly path: string;
  readonly rank: number;
  /** When its verification passed (ms since the epoch). */
  readonly verifiedAt: number;
}

/** What a pass did about one name. */
export type Action =
  /** The desired version was already there. */
  | "unchanged"
  /** Loaded where it was not. */
  | "attached"
  /** Loaded again after the replica lost it (it restarted). */
  | "repaired"
  /** Replaced another version under the same name. */
  | "swapped"
  | "detached"
  /** A detached name the replica does not have. */
  | "absent"
  | "failed"
  /** Not tried: this version already failed on this replica for a reason retrying cannot fix. */
  | "skipped";

/** The result of one name on one replica. */
export interface Outcome {
  readonly name: string;
  readonly ok: boolean;
  readonly action: Action;
  /** The version the replica serves under the name afterwards, as far as the sidecar knows (null: none). */
  readonly version: string | null;
  readonly verification?: {
    readonly listed: boolean;
    readonly changesOutput: boolean | null;
    readonly detail: string;
  };
  readonly attempts?: number;
  readonly millis?: number;
  readonly error?: string;
  /** For a failure: whether a later pass may succeed (connection errors, 5xx, timeouts). */
  readonly transient?: boolean;
  /** For a failure: the server lacks the capability (the plugin's UnsupportedError). */
  readonly unsupported?: boolean;
}

/** Counter names of {@link ReplicaState.counts}. */
export type Counter = "passes_ok" | "passes_failed" | Exclude<Action, "unchanged" | "absent" | "skipped">;

/** A replica as `GET /v1/servers` shows it. */
export interface ReplicaReport {
  readonly url: string;
  /** `ok`: its last pass succeeded; `failing`: its last pass failed; `pending`: no pass yet. */
  readonly state: "ok" | "failing" | "pending";
  readonly passes: number;
  readonly consecutiveFailures: number;
  readonly lastOk: string | null;
  readonly lastAttempt: string | null;
  /** When the next pass starts (later while it backs off). */
  readonly nextAttempt: string | null;
  readonly lastError: string | null;
  /** Names it serves (verified version) or should serve and does not (with the error). */
  readonly adapters: readonly {
    readonly name: string;
    readonly version: string | null;
    readonly verifiedAt: string | null;
    readonly error?: string;
  }[];
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** One replica's state; mutated only under the replica's lock. */
export class ReplicaState {
  /** Name → the version verified there. */
  readonly known = new Map<string, Known>();
  /** Name → a version that failed here for good, and why; not retried until the desired version changes. */
  readonly rejected = new Map<string, { version: string; error: string }>();
  /** Name → the last transient failure (retried on the next pass). */
  readonly errors = new Map<string, string>();
  /** Detached name → the tombstone (its `updatedAt`) this replica was seen without. */
  readonly cleared = new Map<string, string>();
  readonly counts = new Map<Counter, number>();
  passes = 0;
  failures = 0;
  lastOk: number | null = null;
  lastAttempt: number | null = null;
  nextAttempt: number | null = null;
  lastError: string | null = null;

  constructor(readonly server: string, readonly url: string) {}

  /** Records that `a` was verified on the replica at `at`. */
  verified(a: Attachment, at: number): void {
    this.known.set(a.name, {
      adapter: a.adapter,
      version: a.version,
      path: a.path,
      rank: a.rank,
      verifiedAt: at,
    });
    this.errors.delete(a.name);
    this.rejected.delete(a.name);
  }

  /** Records a finished pass: `error` is the failure that makes it count as failed, or null. */
  finishPass(started: number, outcomes: readonly Outcome[], error: string | null): void {
    this.passes++;
    this.lastAttempt = started;
    for (const o of outcomes) {
      if (o.action !== "unchanged" && o.action !== "absent" && o.action !== "skipped") this.#count(o.action);
    }
    if (error === null) {
      this.failures = 0;
      this.lastOk = started;
      this.lastError = null;
      this.#count("passes_ok");
    } else {
      this.failures++;
      this.lastError = error;
      this.#count("passes_failed");
    }
  }

  #count(c: Counter): void {
    this.counts.set(c, (this.counts.get(c) ?? 0) + 1);
  }

  report(): ReplicaReport {
    const names = new Set([...this.known.keys(), ...this.rejected.keys(), ...this.errors.keys()]);
    return {
      url: this.url,
      state: this.passes === 0 ? "pending" : this.failures === 0 ? "ok" : "failing",
      passes: this.passes,
      consecutiveFailures: this.failures,
      lastOk: iso(this.lastOk),
      lastAttempt: iso(this.lastAttempt),
      nextAttempt: iso(this.nextAttempt),
      lastError: this.lastError,
      adapters: [...names].sort().map((name) => {
        const k = this.known.get(name), error = this.rejected.get(name)?.error ?? this.errors.get(name);
        return {
          name,
          version: k?.version ?? null,
          verifiedAt: iso(k?.verifiedAt ?? null),
          ...(error === undefined ? {} : { error }),
        };
      }),
    };
  }
}

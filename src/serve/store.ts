/**
 * Durable job records in SQLite (`node:sqlite`, built into Deno) inside the sidecar's data directory.
 *
 * A job's request, state, progress and result are JSON columns; every change is one UPDATE, so a crash leaves
 * the last written state. At start-up the sidecar marks jobs it finds running as interrupted.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { redactSecrets } from "./security.ts";

/** Every job state, in the order a job can pass through them. */
export const JOB_STATES = [
  "queued",
  "starting",
  "downloading",
  "searching",
  "retraining",
  "exporting",
  "attaching",
  "succeeded",
  "failed",
  "attach_failed",
  "cancelled",
  "interrupted",
] as const;

/** Job states. */
export type JobState = typeof JOB_STATES[number];

/** States in which a job is finished. */
export const FINAL_STATES: readonly JobState[] = ["succeeded", "failed", "attach_failed", "cancelled"];

/** States in which a job's runner is (or should be) working. */
export const ACTIVE_STATES: readonly JobState[] = [
  "starting",
  "downloading",
  "searching",
  "retraining",
  "exporting",
  "attaching",
];

/** A job as stored and served. */
export interface JobRecord {
  readonly id: string;
  readonly state: JobState;
  /** The validated request. */
  readonly request: Record<string, unknown>;
  /** Latest progress: stage, step, total, losses, gates, … */
  readonly progress: Record<string, unknown> | null;
  /** What the run produced: selected layers, gates, metrics, timings, adapter path, attach result. */
  readonly result: Record<string, unknown> | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

type Row = Record<string, string | null>;

const parse = <T>(s: string | null): T | null => (s === null ? null : JSON.parse(s) as T);

function toRecord(r: Row): JobRecord {
  return {
    id: r.id!,
    state: r.state as JobState,
    request: parse(r.request)!,
    progress: parse(r.progress),
    result: parse(r.result),
    error: parse(r.error),
    createdAt: r.created_at!,
    updatedAt: r.updated_at!,
  };
}

/** The job table. */
export class JobStore {
  readonly #db: DatabaseSync;

  /** Opens (creating if needed) the store at `file` (`:memory:` for tests). */
  constructor(file: string) {
    this.#db = new DatabaseSync(file);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      CREATE TABLE IF NOT EXISTS jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT UNIQUE NOT NULL,
        state TEXT NOT NULL,
        request TEXT NOT NULL,
        progress TEXT,
        result TEXT,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
    `);
  }

  /** Adds a queued job. */
  create(id: string, request: Record<string, unknown>): JobRecord {
    const now = new Date().toISOString();
    this.#db.prepare(
      "INSERT INTO jobs (id, state, request, created_at, updated_at) VALUES (?, 'queued', ?, ?, ?)",
    )
      .run(id, redactSecrets(JSON.stringify(request)), now, now);
    return this.get(id)!;
  }

  /**
   * Takes the oldest queued job for the worker: one statement moves it from `queued` to `starting` and returns
   * it, so two callers can never take the same job. Null when none is queued.
   */
  claim(): JobRecord | null {
    const row = this.#db.prepare(
      `UPDATE jobs SET state = 'starting', updated_at = ?
       WHERE seq = (SELECT MIN(seq) FROM jobs WHERE state = 'queued') AND state = 'queued'
       RETURNING *`,
    ).get(new Date().toISOString()) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  /** The job, or null. */
  get(id: string): JobRecord | null {
    const row = this.#db.prepare("SELECT * FROM jobs WHERE id = ?").get(id) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  /** Every job, oldest first (optionally only some states). */
  list(states?: readonly JobState[]): JobRecord[] {
    const rows = this.#db.prepare("SELECT * FROM jobs ORDER BY seq").all() as Row[];
    return rows.map(toRecord).filter((j) => !states || states.includes(j.state));
  }

  /** Updates some fields of a job. */
  update(
    id: string,
    fields: { state?: JobState; progress?: unknown; result?: unknown; error?: JobRecord["error"] },
  ): JobRecord {
    const sets: string[] = [], values: string[] = [];
    if (fields.state !== undefined) sets.push("state = ?"), values.push(fields.state);
    for (const key of ["progress", "result", "error"] as const) {
      // Attach results and errors can quote a server's URL: its credentials are not stored.
      if (key in fields) {
        sets.push(`${key} = ?`), values.push(redactSecrets(JSON.stringify(fields[key] ?? null)));
      }
    }
    sets.push("updated_at = ?");
    values.push(new Date().toISOString());
    this.#db.prepare(`UPDATE jobs SET ${sets.join(", ")} WHERE id = ?`).run(...values, id);
    return this.get(id)!;
  }

  /** Counts of jobs by state. */
  counts(): Record<string, number> {
    const rows = this.#db.prepare("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").all() as {
      state: string;
      n: number;
    }[];
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  }

  close(): void {
    this.#db.close();
  }
}

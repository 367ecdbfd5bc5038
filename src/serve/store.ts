/**
 * Durable job records in SQLite (`node:sqlite`, built into Deno) inside the sidecar's data directory.
 *
 * A job's request, state, progress and result are JSON columns; every change is one UPDATE, so a crash leaves
 * the last written state. A job's history (the points its charts draw) is a table of its own, read in pages.
 * The worker takes jobs only through {@link JobStore.claim}, one statement, so no job is taken twice. At start-up
 * the sidecar marks jobs it finds running as interrupted.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import type { HistoryPoint } from "../flexora/mod.ts";
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
  /** Automatic resumptions after the runner died, since the last start by hand. */
  readonly retries: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}

type Row = Record<string, string | number | null>;

/** One point of a job's history, with its id: ids only grow, so `after` an id pages through it. */
export type HistoryRow = HistoryPoint & { readonly id: number };

const parse = <T>(s: string | number | null): T | null => (s === null ? null : JSON.parse(String(s)) as T);

function toRecord(r: Row): JobRecord {
  return {
    id: String(r.id),
    state: r.state as JobState,
    request: parse(r.request)!,
    progress: parse(r.progress),
    result: parse(r.result),
    error: parse(r.error),
    retries: Number(r.retries ?? 0),
    createdAt: String(r.created_at),
    updatedAt: String(r.updated_at),
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
      CREATE TABLE IF NOT EXISTS history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        point TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS history_job ON history (job_id, id);
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
    // Stores from before automatic retries lack the column: add it in place.
    const columns = this.#db.prepare("PRAGMA table_info(jobs)").all() as { name: string }[];
    if (!columns.some((c) => c.name === "retries")) {
      this.#db.exec("ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0");
    }
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
    fields: {
      state?: JobState;
      progress?: unknown;
      result?: unknown;
      error?: JobRecord["error"];
      retries?: number;
    },
  ): JobRecord {
    const sets: string[] = [], values: (string | number)[] = [];
    if (fields.state !== undefined) sets.push("state = ?"), values.push(fields.state);
    if (fields.retries !== undefined) sets.push("retries = ?"), values.push(fields.retries);
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

  /** Appends a point to a job's history; returns its row. */
  addPoint(id: string, point: HistoryPoint): HistoryRow {
    const row = this.#db.prepare("INSERT INTO history (job_id, point) VALUES (?, ?) RETURNING id")
      .get(id, JSON.stringify(point)) as { id: number };
    return { id: Number(row.id), ...point };
  }

  /** A job's history points with an id past `after`, oldest first, at most `limit`. */
  history(id: string, after = 0, limit = -1): HistoryRow[] {
    const rows = this.#db.prepare(
      "SELECT id, point FROM history WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
    ).all(id, after, limit) as { id: number; point: string }[];
    return rows.map((r) => ({ id: Number(r.id), ...JSON.parse(r.point) }));
  }

  /** The id of a job's last history point (0 when it has none). */
  lastPoint(id: string): number {
    const row = this.#db.prepare("SELECT MAX(id) AS id FROM history WHERE job_id = ?").get(id) as {
      id: number | null;
    };
    return Number(row.id ?? 0);
  }

  /**
   * Cuts a job's history back to where a stage (re)starts: that stage's points past `step` go (for the retraining,
   * its evaluations too). Returns how many were removed.
   */
  rewindHistory(id: string, stage: "search" | "retrain", step: number): number {
    const stages = stage === "search" ? ["search"] : ["retrain", "evaluate"];
    const result = this.#db.prepare(
      `DELETE FROM history WHERE job_id = ? AND json_extract(point, '$.step') > ?
         AND json_extract(point, '$.stage') IN (SELECT value FROM json_each(?))`,
    ).run(id, step, JSON.stringify(stages));
    return Number(result.changes);
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

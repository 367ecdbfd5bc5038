/**
 * The store in SQLite (`node:sqlite`, built into Deno): one file, by default `jobs.sqlite` in the sidecar's data
 * directory. Statements run synchronously; the async methods only wrap their answers. Several stores may open one
 * file (WAL, a busy timeout); the claim is one statement, so no job is taken twice.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import type { HistoryPoint } from "../../flexora/mod.ts";
import { pending } from "./migrations.ts";
import { desiredValues, type JobRow, storedJson, toDesired, toRecord, updateColumns } from "./rows.ts";
import {
  ACTIVE_STATES,
  type ArtifactFiles,
  type ArtifactKind,
  type ArtifactStore,
  type Attachment,
  checkArtifactSize,
  type Claimer,
  type Desired,
  type DesiredStore,
  FINAL_STATES,
  type Heartbeat,
  type HistoryRow,
  type JobFields,
  type JobRecord,
  type JobState,
  leaseLost,
  RUNNER_DIED,
  type Store,
} from "./types.ts";

/**
 * A store in one SQLite file (`:memory:` for tests).
 *
 * @example
 * ```ts
 * import { SqliteStore } from "./sqlite.ts";
 * const store = new SqliteStore(":memory:");
 * await store.create("job-1", { name: "sql" });
 * const job = await store.claim();
 * if (job?.id !== "job-1" || job.state !== "starting" || (await store.claim()) !== null) throw new Error();
 * await store.close();
 * ```
 */
export class SqliteStore implements Store {
  readonly url: string;
  readonly shared = false;
  readonly desired: DesiredStore;
  readonly artifacts: ArtifactStore;
  readonly #db: DatabaseSync;

  constructor(file: string) {
    this.url = `sqlite:${file}`;
    this.#db = new DatabaseSync(file);
    this.#db.exec("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;");
    migrate(this.#db, file);
    this.desired = desiredTable(this.#db, file);
    this.artifacts = artifactTable(this.#db);
  }

  #get(id: string): JobRecord | null {
    const row = this.#db.prepare("SELECT * FROM jobs WHERE id = ?").get(id) as JobRow | undefined;
    return row ? toRecord(row) : null;
  }

  create(id: string, request: Record<string, unknown>): Promise<JobRecord> {
    return answer(() => {
      const now = new Date().toISOString();
      this.#db.prepare(
        "INSERT INTO jobs (id, state, request, created_at, updated_at) VALUES (?, 'queued', ?, ?, ?)",
      ).run(id, storedJson(request), now, now);
      return this.#get(id)!;
    });
  }

  claim(by?: Claimer): Promise<JobRecord | null> {
    return answer(() => {
      const row = this.#db.prepare(
        `UPDATE jobs SET state = 'starting', updated_at = ?, owner = ?, lease_until = ${NOW_MS} + ?,
           cancel_requested = 0
         WHERE seq = (SELECT MIN(seq) FROM jobs WHERE state = 'queued' AND (? IS NULL
           OR json_extract(request, '$.device') IS NULL
           OR json_extract(request, '$.device') IN (SELECT value FROM json_each(?)))
           AND id NOT IN (SELECT value FROM json_each(?)))
         AND state = 'queued'
         RETURNING *`,
      ).get(
        new Date().toISOString(),
        by?.owner ?? null,
        by?.leaseMs ?? null,
        by ? 1 : null,
        JSON.stringify(by?.devices ?? []),
        JSON.stringify(by?.exclude ?? []),
      ) as JobRow | undefined;
      return row ? toRecord(row) : null;
    });
  }

  heartbeat(id: string, owner: string, leaseMs: number): Promise<Heartbeat> {
    return answer(() => {
      const row = this.#db.prepare(
        `UPDATE jobs SET lease_until = ${NOW_MS} + ? WHERE id = ? AND owner = ?
         RETURNING cancel_requested`,
      ).get(leaseMs, id, owner) as { cancel_requested: number } | undefined;
      return { held: row !== undefined, cancelRequested: Boolean(row?.cancel_requested) };
    });
  }

  recover(maxRetries: number, owner?: string): Promise<JobRecord[]> {
    return answer(() => {
      const rows = this.#db.prepare(
        `UPDATE jobs SET state = 'queued', owner = NULL, lease_until = NULL, resume = 1, updated_at = ?
         WHERE (state IN ${ACTIVE_SQL} AND (owner IS NULL OR owner = ? OR lease_until < ${NOW_MS}))
            OR (state = 'interrupted'
                AND NOT (COALESCE(json_extract(error, '$.code'), '') = '${RUNNER_DIED}' AND retries >= ?))
         RETURNING *`,
      ).all(new Date().toISOString(), owner ?? null, maxRetries) as JobRow[];
      return rows.map(toRecord);
    });
  }

  requestCancel(id: string): Promise<JobRecord | null> {
    return answer(() => {
      const row = this.#db.prepare(
        `UPDATE jobs SET cancel_requested = 1,
           state = CASE WHEN state IN ('queued', 'interrupted') THEN 'cancelled' ELSE state END, updated_at = ?
         WHERE id = ? AND state NOT IN ${FINAL_SQL}
         RETURNING *`,
      ).get(new Date().toISOString(), id) as JobRow | undefined;
      return row ? toRecord(row) : null;
    });
  }

  acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    return answer(() =>
      this.#db.prepare(
        `INSERT INTO leases (name, holder, until_ms) VALUES (?, ?, ${NOW_MS} + ?)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
         WHERE leases.holder = excluded.holder OR leases.until_ms < ${NOW_MS}
         RETURNING holder`,
      ).get(name, holder, ttlMs) !== undefined
    );
  }

  releaseLease(name: string, holder: string): Promise<void> {
    return answer(() =>
      void this.#db.prepare("DELETE FROM leases WHERE name = ? AND holder = ?").run(name, holder)
    );
  }

  get(id: string): Promise<JobRecord | null> {
    return answer(() => this.#get(id));
  }

  list(states?: readonly JobState[]): Promise<JobRecord[]> {
    return answer(() => {
      const rows = this.#db.prepare("SELECT * FROM jobs ORDER BY seq").all() as JobRow[];
      return rows.map(toRecord).filter((j) => !states || states.includes(j.state));
    });
  }

  update(id: string, fields: JobFields, owner?: string): Promise<JobRecord> {
    return answer(() => {
      const columns = updateColumns(fields, new Date().toISOString());
      const held = owner === undefined ? "" : " AND owner = ?";
      const result = this.#db.prepare(
        `UPDATE jobs SET ${columns.map(([c]) => `${c} = ?`).join(", ")} WHERE id = ?${held}`,
      ).run(...columns.map(([, v]) => v), id, ...(owner === undefined ? [] : [owner]));
      if (owner !== undefined && Number(result.changes) === 0) throw leaseLost(id, owner);
      return this.#get(id)!;
    });
  }

  addPoint(id: string, point: HistoryPoint): Promise<HistoryRow> {
    return answer(() => {
      const row = this.#db.prepare("INSERT INTO history (job_id, point) VALUES (?, ?) RETURNING id")
        .get(id, JSON.stringify(point)) as { id: number };
      return { id: Number(row.id), ...point };
    });
  }

  history(id: string, after = 0, limit = -1): Promise<HistoryRow[]> {
    return answer(() => {
      const rows = this.#db.prepare(
        "SELECT id, point FROM history WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
      ).all(id, after, limit) as { id: number; point: string }[];
      return rows.map((r) => ({ id: Number(r.id), ...JSON.parse(r.point) }));
    });
  }

  lastPoint(id: string): Promise<number> {
    return answer(() => {
      const row = this.#db.prepare("SELECT MAX(id) AS id FROM history WHERE job_id = ?").get(id) as {
        id: number | null;
      };
      return Number(row.id ?? 0);
    });
  }

  rewindHistory(id: string, stage: "search" | "retrain", step: number): Promise<number> {
    return answer(() => {
      const stages = stage === "search" ? ["search"] : ["retrain", "evaluate"];
      const result = this.#db.prepare(
        `DELETE FROM history WHERE job_id = ? AND json_extract(point, '$.step') > ?
           AND json_extract(point, '$.stage') IN (SELECT value FROM json_each(?))`,
      ).run(id, step, JSON.stringify(stages));
      return Number(result.changes);
    });
  }

  counts(): Promise<Record<string, number>> {
    return answer(() => {
      const rows = this.#db.prepare("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").all() as {
        state: string;
        n: number;
      }[];
      return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
    });
  }

  schemaVersion(): Promise<number> {
    return answer(() => userVersion(this.#db));
  }

  /** Closes the file (again: nothing). */
  close(): Promise<void> {
    return answer(() => void (this.#db.isOpen && this.#db.close()));
  }
}

/** The database's clock in ms since the epoch: leases are measured on it, whichever host writes them. */
const NOW_MS = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";
const ACTIVE_SQL = `(${ACTIVE_STATES.map((s) => `'${s}'`).join(", ")})`;
const FINAL_SQL = `(${FINAL_STATES.map((s) => `'${s}'`).join(", ")})`;

/** A synchronous answer as a promise: what it throws is a rejection, as from any other store. */
function answer<T>(work: () => T): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (e) {
    return Promise.reject(e);
  }
}

const userVersion = (db: DatabaseSync) =>
  Number((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version);

/**
 * Brings the file's schema to this build's, in one write transaction (a second store opening the file at the same
 * time waits, then finds nothing to do).
 */
function migrate(db: DatabaseSync, file: string): void {
  db.exec("BEGIN IMMEDIATE");
  try {
    const current = userVersion(db);
    for (const m of pending(current, `the store ${file}`)) {
      db.exec(m.sqlite);
      if (m.version === 1) adoptUnversioned(db);
      db.exec(`PRAGMA user_version = ${m.version}`);
    }
    db.exec("COMMIT");
  } catch (e) {
    db.exec("ROLLBACK");
    throw e;
  }
}

/** A store from before automatic retries lacks the column: it is added in place. */
function adoptUnversioned(db: DatabaseSync): void {
  const columns = db.prepare("PRAGMA table_info(jobs)").all() as { name: string }[];
  if (!columns.some((c) => c.name === "retries")) {
    db.exec("ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0");
  }
}

/** The desired table of `db` (`file` names it in errors). */
function desiredTable(db: DatabaseSync, file: string): DesiredStore {
  const get = (server: string, name: string): Desired | null => {
    const row = db.prepare("SELECT * FROM desired WHERE server = ? AND name = ?").get(server, name);
    return row ? toDesired(row, file) : null;
  };
  const write = (row: Desired) =>
    db.prepare(
      `INSERT OR REPLACE INTO desired (server, name, state, adapter, version, path, rank, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(...desiredValues(row));
  const replace = (row: Desired) =>
    answer(() => {
      const previous = get(row.server, row.name);
      write(row);
      return previous;
    });
  return {
    get: (server, name) => answer(() => get(server, name)),
    list: (server) =>
      answer(() => {
        const rows = server === undefined
          ? db.prepare("SELECT * FROM desired ORDER BY server, name").all()
          : db.prepare("SELECT * FROM desired WHERE server = ? ORDER BY name").all(server);
        return rows.map((row) => toDesired(row, file));
      }),
    attach: (a: Attachment) => replace({ ...a, state: "attached", updatedAt: new Date().toISOString() }),
    detach: (server, name) =>
      replace({ state: "detached", server, name, updatedAt: new Date().toISOString() }),
    restore: (server, name, row) =>
      answer(() => {
        db.prepare("DELETE FROM desired WHERE server = ? AND name = ?").run(server, name);
        if (row !== null) write(row);
      }),
    forget: (server, name, updatedAt) =>
      answer(() => {
        db.prepare(
          "DELETE FROM desired WHERE server = ? AND name = ? AND state = 'detached' AND updated_at = ?",
        ).run(server, name, updatedAt);
      }),
  };
}

/** The artifacts table of `db`. */
function artifactTable(db: DatabaseSync): ArtifactStore {
  return {
    put: (kind: ArtifactKind, key: string, files: ArtifactFiles) =>
      answer(() => {
        checkArtifactSize(kind, key, files);
        const now = new Date().toISOString();
        db.exec("BEGIN IMMEDIATE");
        try {
          db.prepare("DELETE FROM artifacts WHERE kind = ? AND key = ?").run(kind, key);
          const insert = db.prepare(
            "INSERT INTO artifacts (kind, key, file, bytes, updated_at) VALUES (?, ?, ?, ?, ?)",
          );
          for (const [file, bytes] of files) insert.run(kind, key, file, bytes, now);
          db.exec("COMMIT");
        } catch (e) {
          db.exec("ROLLBACK");
          throw e;
        }
      }),
    get: (kind, key) =>
      answer(() => {
        const rows = db.prepare("SELECT file, bytes FROM artifacts WHERE kind = ? AND key = ? ORDER BY file")
          .all(kind, key) as { file: string; bytes: Uint8Array }[];
        return rows.length ? new Map(rows.map((r) => [r.file, new Uint8Array(r.bytes)])) : null;
      }),
    list: (kind) =>
      answer(() => {
        const rows = db.prepare(
          `SELECT key, SUM(LENGTH(bytes)) AS bytes, MAX(updated_at) AS updated_at FROM artifacts WHERE kind = ?
           GROUP BY key ORDER BY key`,
        ).all(kind) as { key: string; bytes: number; updated_at: string }[];
        return rows.map((r) => ({ key: r.key, bytes: Number(r.bytes), updatedAt: r.updated_at }));
      }),
    delete: (kind, key) =>
      answer(() => void db.prepare("DELETE FROM artifacts WHERE kind = ? AND key = ?").run(kind, key)),
  };
}

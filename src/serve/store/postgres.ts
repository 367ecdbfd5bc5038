/**
 * The store in PostgreSQL, shared by any number of sidecars (`flexora serve --store postgres://…`), through the
 * `postgres` driver (a pool of connections that reconnects by itself). The claim takes the oldest queued row with
 * `FOR UPDATE SKIP LOCKED`, so sidecars claiming at once each get another job; migrations run in one transaction
 * under an advisory lock. A query that fails because the connection went (the database restarting) is retried
 * until the database is back, within `retryMs`.
 *
 * @module
 */

import postgres from "postgres";
import type { HistoryPoint } from "../../flexora/mod.ts";
import { redactSecrets } from "../security.ts";
import { pending } from "./migrations.ts";
import { desiredValues, type JobRow, storedJson, toDesired, toRecord, updateColumns } from "./rows.ts";
import {
  ACTIVE_STATES,
  type ArtifactStore,
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

type Sql = postgres.Sql | postgres.TransactionSql;

/** Thrown when the store cannot be opened: unreachable, login refused, no such database. */
export class StoreOpenError extends Error {
  override name = "StoreOpenError";
}

/** Options of {@link PostgresStore.open}. */
export interface PostgresOptions {
  /** Connections in the pool (default 10). */
  readonly max?: number;
  /** How long a query keeps being retried while the database is unreachable (default 30 000 ms). */
  readonly retryMs?: number;
  /** Seconds to wait for a connection (default 10). */
  readonly connectTimeout?: number;
}

/** The database's clock in ms since the epoch: leases are measured on it, whichever host writes them. */
const NOW_MS = (sql: Sql) => sql`(extract(epoch from clock_timestamp()) * 1000)::bigint`;

/** The advisory lock key migrations run under ("flexora" in ASCII). */
const MIGRATION_LOCK = 0x666c65786f7261;

/** Errors that mean the connection went, not that the query was wrong: retried. */
export function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  if (typeof code !== "string") return false;
  return /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|CONNECTION_(CLOSED|ENDED|DESTROYED)|CONNECT_TIMEOUT)$/
    .test(code) ||
    /^(08...|57P01|57P02|57P03)$/.test(code);
}

/** Why a first connection failed, in words for the operator. */
function openError(url: string, e: unknown): StoreOpenError {
  const code = String((e as { code?: unknown })?.code ?? "");
  const message = e instanceof Error ? e.message : String(e);
  const why = code === "28P01" || code === "28000"
    ? `the database refused the login (${message})`
    : code === "3D000"
    ? `the database does not exist (${message})`
    : isConnectionError(e) || /^(ENOTFOUND|EAI_AGAIN|EHOSTUNREACH)$/.test(code)
    ? `the database is unreachable (${code}: ${message})`
    : message;
  return new StoreOpenError(`cannot open the store ${url}: ${why}`);
}

/** A store in a PostgreSQL database. */
export class PostgresStore implements Store {
  readonly url: string;
  readonly shared = true;
  readonly desired: DesiredStore;
  readonly artifacts: ArtifactStore;
  readonly #sql: postgres.Sql;
  readonly #retryMs: number;

  private constructor(url: string, sql: postgres.Sql, retryMs: number) {
    this.url = url;
    this.#sql = sql;
    this.#retryMs = retryMs;
    this.desired = this.#desiredTable();
    this.artifacts = this.#artifactTable();
  }

  /**
   * Connects to `url` (`postgres://user:password@host:port/db`) and brings the schema to this build's; throws
   * {@link StoreOpenError} naming the URL (its password hidden) when the database cannot be reached or refuses.
   */
  static async open(url: string, options: PostgresOptions = {}): Promise<PostgresStore> {
    const shown = redactSecrets(url);
    let sql: postgres.Sql;
    try {
      sql = postgres(url, {
        max: options.max ?? 10,
        connect_timeout: options.connectTimeout ?? 10,
        onnotice: () => {},
      });
    } catch (e) {
      throw new StoreOpenError(`cannot open the store ${shown}: ${e instanceof Error ? e.message : e}`);
    }
    const store = new PostgresStore(shown, sql, options.retryMs ?? 30_000);
    try {
      await sql`SELECT 1`;
    } catch (e) {
      await sql.end({ timeout: 1 }).catch(() => {});
      throw openError(shown, e);
    }
    try {
      await store.#migrate();
    } catch (e) {
      await sql.end({ timeout: 1 }).catch(() => {});
      throw e;
    }
    return store;
  }

  /** Runs `work`, again while the connection is down (a restarting database), for at most `retryMs`. */
  async #q<T>(work: (sql: postgres.Sql) => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.#retryMs;
    for (let wait = 100;; wait = Math.min(wait * 2, 2000)) {
      try {
        return await work(this.#sql);
      } catch (e) {
        if (!isConnectionError(e) || Date.now() + wait > deadline) throw e;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /** In one transaction under the advisory lock: sidecars starting together migrate a fresh database once. */
  #migrate(): Promise<void> {
    return this.#q((sql) =>
      sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
        await tx`CREATE TABLE IF NOT EXISTS flexora_schema (
          version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)`;
        const [{ v }] = await tx`SELECT COALESCE(MAX(version), 0)::int AS v FROM flexora_schema`;
        for (const m of pending(v, `the store ${this.url}`)) {
          await tx.unsafe(m.postgres);
          await tx`INSERT INTO flexora_schema VALUES (${m.version}, ${m.description}, ${
            new Date().toISOString()
          })`;
        }
      })
    ).then(() => {});
  }

  async schemaVersion(): Promise<number> {
    const [{ v }] = await this.#q((sql) =>
      sql`SELECT COALESCE(MAX(version), 0)::int AS v FROM flexora_schema`
    );
    return Number(v);
  }

  async create(id: string, request: Record<string, unknown>): Promise<JobRecord> {
    const now = new Date().toISOString(), stored = storedJson(request);
    const [row] = await this.#q((sql) =>
      sql`INSERT INTO jobs (id, state, request, created_at, updated_at)
          VALUES (${id}, 'queued', ${stored}, ${now}, ${now}) ON CONFLICT (id) DO NOTHING RETURNING *`
    );
    if (row) return toRecord(row as JobRow);
    // The row exists: this very insert, retried after its answer was lost (the same request and time), or
    // another job's id.
    const [existing] = await this.#q((sql) => sql`SELECT * FROM jobs WHERE id = ${id}`);
    if (existing?.request === stored && existing.created_at === now) return toRecord(existing as JobRow);
    throw new Error(`a job '${id}' already exists in the store ${this.url}`);
  }

  async claim(by?: Claimer): Promise<JobRecord | null> {
    const devices = [...(by?.devices ?? [])];
    const [row] = await this.#q((sql) =>
      sql`UPDATE jobs SET state = 'starting', updated_at = ${new Date().toISOString()}, owner = ${
        by?.owner ?? null
      },
            lease_until = ${NOW_MS(sql)} + ${by?.leaseMs ?? null}::bigint, cancel_requested = false
          WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued'
              AND (${by === undefined}::boolean OR request::jsonb->>'device' IS NULL
                OR request::jsonb->>'device' = ANY(${devices}::text[]))
              AND NOT (id = ANY(${[...(by?.exclude ?? [])]}::text[]))
              ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
            AND state = 'queued'
          RETURNING *`
    );
    return row ? toRecord(row as JobRow) : null;
  }

  async heartbeat(id: string, owner: string, leaseMs: number): Promise<Heartbeat> {
    const [row] = await this.#q((sql) =>
      sql`UPDATE jobs SET lease_until = ${NOW_MS(sql)} + ${leaseMs}::bigint
          WHERE id = ${id} AND owner = ${owner}
          RETURNING cancel_requested`
    );
    return { held: row !== undefined, cancelRequested: Boolean(row?.cancel_requested) };
  }

  async recover(maxRetries: number, owner?: string): Promise<JobRecord[]> {
    const rows = await this.#q((sql) =>
      sql`UPDATE jobs SET state = 'queued', owner = NULL, lease_until = NULL, resume = 1,
            updated_at = ${new Date().toISOString()}
          WHERE (state IN ${sql(ACTIVE_STATES as JobState[])}
                 AND (owner IS NULL OR owner = ${owner ?? null} OR lease_until < ${NOW_MS(sql)}))
             OR (state = 'interrupted'
                 AND NOT (COALESCE(error::jsonb->>'code', '') = ${RUNNER_DIED} AND retries >= ${maxRetries}))
          RETURNING *`
    );
    return rows.map((r) => toRecord(r as JobRow));
  }

  async requestCancel(id: string): Promise<JobRecord | null> {
    const [row] = await this.#q((sql) =>
      sql`UPDATE jobs SET cancel_requested = true, updated_at = ${new Date().toISOString()},
            state = CASE WHEN state IN ('queued', 'interrupted') THEN 'cancelled' ELSE state END
          WHERE id = ${id} AND state NOT IN ${sql(FINAL_STATES as JobState[])}
          RETURNING *`
    );
    return row ? toRecord(row as JobRow) : null;
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const rows = await this.#q((sql) =>
      sql`INSERT INTO leases (name, holder, until_ms) VALUES (${name}, ${holder}, ${
        NOW_MS(sql)
      } + ${ttlMs}::bigint)
          ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
          WHERE leases.holder = excluded.holder OR leases.until_ms < ${NOW_MS(sql)}
          RETURNING holder`
    );
    return rows.length > 0;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.#q((sql) => sql`DELETE FROM leases WHERE name = ${name} AND holder = ${holder}`);
  }

  async get(id: string): Promise<JobRecord | null> {
    const [row] = await this.#q((sql) => sql`SELECT * FROM jobs WHERE id = ${id}`);
    return row ? toRecord(row as JobRow) : null;
  }

  async list(states?: readonly JobState[]): Promise<JobRecord[]> {
    const rows = await this.#q((sql) =>
      states
        ? sql`SELECT * FROM jobs WHERE state IN ${sql(states as JobState[])} ORDER BY seq`
        : sql`SELECT * FROM jobs ORDER BY seq`
    );
    return rows.map((r) => toRecord(r as JobRow));
  }

  async update(id: string, fields: JobFields, owner?: string): Promise<JobRecord> {
    const set = Object.fromEntries(updateColumns(fields, new Date().toISOString()));
    const [row] = await this.#q((sql) =>
      owner === undefined
        ? sql`UPDATE jobs SET ${sql(set)} WHERE id = ${id} RETURNING *`
        : sql`UPDATE jobs SET ${sql(set)} WHERE id = ${id} AND owner = ${owner} RETURNING *`
    );
    if (!row && owner !== undefined) throw leaseLost(id, owner);
    if (!row) throw new Error(`no job '${id}' in the store ${this.url}`);
    return toRecord(row as JobRow);
  }

  async addPoint(id: string, point: HistoryPoint): Promise<HistoryRow> {
    const [row] = await this.#q((sql) =>
      sql`INSERT INTO history (job_id, point) VALUES (${id}, ${JSON.stringify(point)}) RETURNING id`
    );
    return { id: Number(row.id), ...point };
  }

  async history(id: string, after = 0, limit = -1): Promise<HistoryRow[]> {
    const rows = await this.#q((sql) =>
      sql`SELECT id, point FROM history WHERE job_id = ${id} AND id > ${after} ORDER BY id
          LIMIT ${limit < 0 ? null : limit}`
    );
    return rows.map((r) => ({ id: Number(r.id), ...JSON.parse(r.point) }));
  }

  async lastPoint(id: string): Promise<number> {
    const [row] = await this.#q((sql) => sql`SELECT MAX(id) AS id FROM history WHERE job_id = ${id}`);
    return Number(row.id ?? 0);
  }

  async rewindHistory(id: string, stage: "search" | "retrain", step: number): Promise<number> {
    const stages = stage === "search" ? ["search"] : ["retrain", "evaluate"];
    const result = await this.#q((sql) =>
      sql`DELETE FROM history WHERE job_id = ${id} AND (point::jsonb->>'step')::numeric > ${step}
          AND point::jsonb->>'stage' IN ${sql(stages)}`
    );
    return result.count;
  }

  async counts(): Promise<Record<string, number>> {
    const rows = await this.#q((sql) => sql`SELECT state, COUNT(*)::int AS n FROM jobs GROUP BY state`);
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }

  #desiredTable(): DesiredStore {
    const where = this.url;
    const read = async (sql: Sql, server: string, name: string, lock = false) => {
      const [row] = lock
        ? await sql`SELECT * FROM desired WHERE server = ${server} AND name = ${name} FOR UPDATE`
        : await sql`SELECT * FROM desired WHERE server = ${server} AND name = ${name}`;
      return row ? toDesired({ ...row }, where) : null;
    };
    const write = (sql: Sql, row: Desired) => {
      const [server, name, state, adapter, version, path, rank, updatedAt] = desiredValues(row);
      return sql`INSERT INTO desired (server, name, state, adapter, version, path, rank, updated_at)
        VALUES (${server}, ${name}, ${state}, ${adapter}, ${version}, ${path}, ${rank}, ${updatedAt})
        ON CONFLICT (server, name) DO UPDATE SET state = EXCLUDED.state, adapter = EXCLUDED.adapter,
          version = EXCLUDED.version, path = EXCLUDED.path, rank = EXCLUDED.rank, updated_at = EXCLUDED.updated_at`;
    };
    /** Writes `row`, returning the row it replaced, in one transaction. */
    const replace = (row: Desired) =>
      this.#q((sql) =>
        sql.begin(async (tx) => {
          const previous = await read(tx, row.server, row.name, true);
          await write(tx, row);
          return previous;
        })
      );
    return {
      get: (server, name) => this.#q((sql) => read(sql, server, name)),
      list: async (server) => {
        const rows = await this.#q((sql) =>
          server === undefined
            ? sql`SELECT * FROM desired ORDER BY server COLLATE "C", name COLLATE "C"`
            : sql`SELECT * FROM desired WHERE server = ${server} ORDER BY name COLLATE "C"`
        );
        return rows.map((r) => toDesired({ ...r }, where));
      },
      attach: (a) => replace({ ...a, state: "attached", updatedAt: new Date().toISOString() }),
      detach: (server, name) =>
        replace({ state: "detached", server, name, updatedAt: new Date().toISOString() }),
      restore: (server, name, row) =>
        this.#q((sql) =>
          sql.begin(async (tx) => {
            await tx`DELETE FROM desired WHERE server = ${server} AND name = ${name}`;
            if (row !== null) await write(tx, row);
          })
        ).then(() => {}),
      forget: (server, name, updatedAt) =>
        this.#q((sql) =>
          sql`DELETE FROM desired WHERE server = ${server} AND name = ${name} AND state = 'detached'
              AND updated_at = ${updatedAt}`
        ).then(() => {}),
    };
  }

  #artifactTable(): ArtifactStore {
    return {
      put: async (kind, key, files) => {
        checkArtifactSize(kind, key, files);
        const now = new Date().toISOString();
        await this.#q((sql) =>
          sql.begin(async (tx) => {
            await tx`DELETE FROM artifacts WHERE kind = ${kind} AND key = ${key}`;
            for (const [file, bytes] of files) {
              await tx`INSERT INTO artifacts (kind, key, file, bytes, updated_at)
                       VALUES (${kind}, ${key}, ${file}, ${bytes}, ${now})`;
            }
          })
        );
      },
      get: async (kind, key) => {
        const rows = await this.#q((sql) =>
          sql`SELECT file, bytes FROM artifacts WHERE kind = ${kind} AND key = ${key} ORDER BY file COLLATE "C"`
        );
        return rows.length ? new Map(rows.map((r) => [r.file as string, new Uint8Array(r.bytes)])) : null;
      },
      list: async (kind) => {
        const rows = await this.#q((sql) =>
          sql`SELECT key COLLATE "C" AS key, SUM(LENGTH(bytes))::bigint AS bytes, MAX(updated_at) AS updated_at
              FROM artifacts WHERE kind = ${kind} GROUP BY 1 ORDER BY 1`
        );
        return rows.map((r) => ({
          key: r.key as string,
          bytes: Number(r.bytes),
          updatedAt: r.updated_at as string,
        }));
      },
      delete: async (kind, key) => {
        await this.#q((sql) => sql`DELETE FROM artifacts WHERE kind = ${kind} AND key = ${key}`);
      },
    };
  }
}

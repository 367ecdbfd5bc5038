/**
 * The store's schema, as numbered migrations applied in order at start. SQLite keeps the version in
 * `PRAGMA user_version`; PostgreSQL in the table `flexora_schema`, and applies them under an advisory lock, so
 * sidecars starting together on a fresh database migrate it once. A migration never changes once released: a
 * change to the schema is a new one at the end.
 *
 * @module
 */

/** One step of the schema, in each database's dialect. */
export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sqlite: string;
  readonly postgres: string;
}

/** Every migration, oldest first; versions count from 1 without gaps. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "jobs, their history, and the desired attachments",
    // IF NOT EXISTS: a SQLite store from before versioned migrations already has these tables.
    sqlite: `
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
        updated_at TEXT NOT NULL,
        retries INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE IF NOT EXISTS desired (
        server TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('attached', 'detached')),
        adapter TEXT,
        version TEXT,
        path TEXT,
        rank INTEGER,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (server, name)
      );`,
    postgres: `
      CREATE TABLE history (
        id BIGSERIAL PRIMARY KEY,
        job_id TEXT NOT NULL,
        point TEXT NOT NULL
      );
      CREATE INDEX history_job ON history (job_id, id);
      CREATE TABLE jobs (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT UNIQUE NOT NULL,
        state TEXT NOT NULL,
        request TEXT NOT NULL,
        progress TEXT,
        result TEXT,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        retries INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX jobs_state ON jobs (state, seq);
      CREATE TABLE desired (
        server TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('attached', 'detached')),
        adapter TEXT,
        version TEXT,
        path TEXT,
        rank INTEGER,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (server, name)
      );`,
  },
  {
    version: 2,
    description: "artifacts: finished adapters and training checkpoints, as bytes",
    sqlite: `
      CREATE TABLE artifacts (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        file TEXT NOT NULL,
        bytes BLOB NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (kind, key, file)
      );`,
    postgres: `
      CREATE TABLE artifacts (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        file TEXT NOT NULL,
        bytes BYTEA NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (kind, key, file)
      );`,
  },
  {
    version: 3,
    description: "leases: who runs each job until when, cancel requests, whether it resumes; named leases",
    sqlite: `
      ALTER TABLE jobs ADD COLUMN owner TEXT;
      ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
      ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN resume INTEGER NOT NULL DEFAULT 0;
      CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms INTEGER NOT NULL);`,
    postgres: `
      ALTER TABLE jobs ADD COLUMN owner TEXT, ADD COLUMN lease_until BIGINT,
        ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false, ADD COLUMN resume INTEGER NOT NULL DEFAULT 0;
      CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL);`,
  },
];

/** The schema version this build writes: the last migration's. */
export const SCHEMA_VERSION = MIGRATIONS.at(-1)!.version;

/** Thrown when a database is at a newer schema than this build knows (a newer flexora migrated it). */
export class SchemaTooNewError extends Error {
  override name = "SchemaTooNewError";
}

/** The migrations past `current`; throws when the database is newer than this build. */
export function pending(current: number, where: string): readonly Migration[] {
  if (current > SCHEMA_VERSION) {
    throw new SchemaTooNewError(
      `${where} is at schema version ${current}; this flexora knows up to ${SCHEMA_VERSION}: upgrade flexora`,
    );
  }
  return MIGRATIONS.filter((m) => m.version > current);
}

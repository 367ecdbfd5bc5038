/**
 * The desired attachments, durable in the sidecar's SQLite file (table `desired`, beside `jobs`): which adapter
 * version each server should serve under which name, and which names were detached and must stay off.
 *
 * One row per (server, name). `attached` rows say what to serve; a `detached` row is a tombstone, kept until every
 * replica of the server was seen without the name, so a replica that was unreachable during the detach has the
 * adapter taken off when it comes back instead of keeping it.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { z } from "zod";
import { parseJsonValue } from "../../util/json_file.ts";

/** What to attach: the adapter version `version` (folder `path`) served as `name` on every replica of `server`. */
export interface Attachment {
  /** The configured server (deployment). */
  readonly server: string;
  /** The name requests use (`lora_name`). */
  readonly name: string;
  /** The adapter's own name (its folder under `<dataDir>/adapters/`); usually `name`. */
  readonly adapter: string;
  /** The version: the job id that wrote it, its folder name. */
  readonly version: string;
  readonly path: string;
  readonly rank: number;
}

/** A row: an attachment to keep true, or a detached name to keep off. */
export type Desired =
  | (Attachment & { readonly state: "attached"; readonly updatedAt: string })
  | {
    readonly state: "detached";
    readonly server: string;
    readonly name: string;
    readonly updatedAt: string;
  };

const text = z.string({ error: "must be text" }).min(1, { error: "must not be empty" });
const common = { server: text, name: text, updated_at: text };

/** A row of the `desired` table as SQLite returns it; {@link toDesired} checks it. */
const Row = z.discriminatedUnion("state", [
  z.object({ ...common, state: z.literal("detached") }),
  z.object({
    ...common,
    state: z.literal("attached"),
    adapter: text,
    version: text,
    path: text,
    rank: z.number({ error: "must be a positive integer" }).int({ error: "must be a positive integer" })
      .positive({ error: "must be a positive integer" }),
  }),
], { error: 'must be "attached" or "detached"' });

/** A row read back, checked: a damaged row is an error naming the table, the row and the column. */
function toDesired(row: unknown, file: string): Desired {
  const where = (() => {
    const r = row as { server?: unknown; name?: unknown };
    return `${file}: table 'desired', row (${JSON.stringify(r?.server)}, ${JSON.stringify(r?.name)})`;
  })();
  const r = parseJsonValue(row, Row, { file: where, what: "desired-state row" });
  const base = { server: r.server, name: r.name, updatedAt: r.updated_at };
  if (r.state === "detached") return { state: "detached", ...base };
  return { state: "attached", ...base, adapter: r.adapter, version: r.version, path: r.path, rank: r.rank };
}

/**
 * The desired-state table.
 *
 * @example
 * ```ts
 * import { DesiredStore } from "./desired.ts";
 * const store = new DesiredStore(":memory:");
 * store.attach({ server: "vllm", name: "sql", adapter: "sql", version: "job-1", path: "/a/sql/job-1", rank: 8 });
 * store.detach("vllm", "sql");
 * if (store.get("vllm", "sql")?.state !== "detached") throw new Error("a tombstone stays");
 * store.close();
 * ```
 */
export class DesiredStore {
  readonly #db: DatabaseSync;
  readonly #file: string;

  /** Opens (creating the table if needed) the store in `file`, the sidecar's SQLite file (`:memory:` in tests). */
  constructor(file: string) {
    this.#file = file;
    this.#db = new DatabaseSync(file);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA busy_timeout = 5000;
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
      );
    `);
  }

  /** The row for `name` on `server`, or null. */
  get(server: string, name: string): Desired | null {
    const row = this.#db.prepare("SELECT * FROM desired WHERE server = ? AND name = ?").get(server, name);
    return row ? toDesired(row, this.#file) : null;
  }

  /** Every row (of one server), ordered by server and name. */
  list(server?: string): Desired[] {
    const rows = server === undefined
      ? this.#db.prepare("SELECT * FROM desired ORDER BY server, name").all()
      : this.#db.prepare("SELECT * FROM desired WHERE server = ? ORDER BY name").all(server);
    return rows.map((row) => toDesired(row, this.#file));
  }

  /** Makes `a` desired (replacing what was desired under its name); returns the row it replaced. */
  attach(a: Attachment): Desired | null {
    const previous = this.get(a.server, a.name);
    this.#db.prepare(
      `INSERT OR REPLACE INTO desired (server, name, state, adapter, version, path, rank, updated_at)
       VALUES (?, ?, 'attached', ?, ?, ?, ?, ?)`,
    ).run(a.server, a.name, a.adapter, a.version, a.path, a.rank, new Date().toISOString());
    return previous;
  }

  /** Marks `name` detached on `server` (a tombstone); returns the row it replaced. */
  detach(server: string, name: string): Desired | null {
    const previous = this.get(server, name);
    this.#db.prepare(
      "INSERT OR REPLACE INTO desired (server, name, state, updated_at) VALUES (?, ?, 'detached', ?)",
    ).run(server, name, new Date().toISOString());
    return previous;
  }

  /** Puts `row` back as it was (null: no row), undoing an {@link attach} or {@link detach} that failed everywhere. */
  restore(server: string, name: string, row: Desired | null): void {
    this.#db.prepare("DELETE FROM desired WHERE server = ? AND name = ?").run(server, name);
    if (row === null) return;
    this.#db.prepare(
      `INSERT INTO desired (server, name, state, adapter, version, path, rank, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      row.server,
      row.name,
      row.state,
      row.state === "attached" ? row.adapter : null,
      row.state === "attached" ? row.version : null,
      row.state === "attached" ? row.path : null,
      row.state === "attached" ? row.rank : null,
      row.updatedAt,
    );
  }

  /** Drops the tombstone of `name` written at `updatedAt` (a newer row is left alone). */
  forget(server: string, name: string, updatedAt: string): void {
    this.#db.prepare(
      "DELETE FROM desired WHERE server = ? AND name = ? AND state = 'detached' AND updated_at = ?",
    ).run(server, name, updatedAt);
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * Which store a sidecar opens: `flexora serve --store URL` (or `FLEXORA_STORE`), `sqlite:PATH` or
 * `postgres://user:password@host:port/db`; without one, `jobs.sqlite` in the data directory, as always.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { redactSecrets } from "../security.ts";
import { type PostgresOptions, PostgresStore } from "./postgres.ts";
import { SqliteStore } from "./sqlite.ts";
import type { Store } from "./types.ts";

/** Thrown for a store URL that names no store this build can open; the message quotes it. */
export class StoreUrlError extends Error {
  override name = "StoreUrlError";
}

/** A parsed store URL. */
export type StoreLocation =
  | { readonly kind: "sqlite"; readonly file: string }
  | { readonly kind: "postgres"; readonly url: string };

/**
 * Parses a store URL: `sqlite:PATH` (relative to the working directory; `sqlite::memory:` for none) or
 * `postgres://…` / `postgresql://…` with a host and a database.
 *
 * @example
 * ```ts
 * import { parseStoreUrl } from "./open.ts";
 * const pg = parseStoreUrl("postgres://flexora@db.internal:5432/jobs");
 * if (pg.kind !== "postgres") throw new Error(pg.kind);
 * let said = "";
 * try { parseStoreUrl("mysql://root:pw@db/jobs"); } catch (e) { said = (e as Error).message; }
 * if (!said.includes("'mysql://***@db/jobs'")) throw new Error(said);
 * ```
 */
export function parseStoreUrl(url: string): StoreLocation {
  const shown = `'${redactSecrets(url)}'`;
  const bad = (why: string) => new StoreUrlError(`the store URL ${shown} ${why}`);
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length);
    if (path === "") throw bad("names no file: give sqlite:PATH");
    return { kind: "sqlite", file: path === ":memory:" ? path : resolve(path) };
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw bad("is not a valid URL: give postgres://user:password@host:port/database");
    }
    if (!parsed.hostname) throw bad("names no host: give postgres://user:password@host:port/database");
    if (parsed.pathname.length <= 1) throw bad("names no database: give postgres://user@host/database");
    return { kind: "postgres", url };
  }
  throw bad("is neither sqlite:PATH nor postgres://user:password@host:port/database");
}

/** Opens the store at `url`, or `<dataDir>/jobs.sqlite` when there is none. */
export function openStore(
  url: string | undefined,
  dataDir: string,
  options: PostgresOptions = {},
): Promise<Store> {
  if (url === undefined) return Promise.resolve(new SqliteStore(join(dataDir, "jobs.sqlite")));
  const at = parseStoreUrl(url);
  if (at.kind === "sqlite") return Promise.resolve(new SqliteStore(at.file));
  return PostgresStore.open(at.url, options);
}

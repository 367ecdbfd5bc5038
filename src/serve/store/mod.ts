/**
 * The sidecar's store: its contract ({@link ./types.ts}), SQLite ({@link ./sqlite.ts}), PostgreSQL
 * ({@link ./postgres.ts}), which one a URL names ({@link ./open.ts}), the schema's migrations
 * ({@link ./migrations.ts}).
 *
 * @module
 */

export * from "./types.ts";
export { SqliteStore } from "./sqlite.ts";
export { MIGRATIONS, SCHEMA_VERSION, SchemaTooNewError } from "./migrations.ts";
export { isConnectionError, type PostgresOptions, PostgresStore, StoreOpenError } from "./postgres.ts";
export { openStore, parseStoreUrl, type StoreLocation, StoreUrlError } from "./open.ts";

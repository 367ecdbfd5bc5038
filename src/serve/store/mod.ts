/**
 * The sidecar's store: its contract ({@link ./types.ts}), SQLite ({@link ./sqlite.ts}), the schema's migrations
 * ({@link ./migrations.ts}).
 *
 * @module
 */

export * from "./types.ts";
export { SqliteStore } from "./sqlite.ts";
export { MIGRATIONS, SCHEMA_VERSION, SchemaTooNewError } from "./migrations.ts";

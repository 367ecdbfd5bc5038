/**
 * Rows as both databases return them, turned into records: a job's JSON columns parsed, a desired row checked
 * (a damaged row is an error naming the store, the table, the row and the column).
 *
 * @module
 */

import { z } from "zod";
import { parseJsonValue } from "../../util/json_file.ts";
import { redactSecrets } from "../security.ts";
import type { Desired, JobFields, JobRecord, JobState } from "./types.ts";

/** A row of the `jobs` table: JSON columns as text. */
export type JobRow = Record<string, string | number | bigint | null>;

const parse = <T>(
  s: unknown,
): T | null => (s === null || s === undefined ? null : JSON.parse(String(s)) as T);

/** A `jobs` row as a record. */
export function toRecord(r: JobRow): JobRecord {
  return {
    id: String(r.id),
    state: r.state as JobState,
    request: parse(r.request)!,
    progress: parse(r.progress),
    result: parse(r.result),
    error: parse(r.error),
    retries: Number(r.retries ?? 0),
    owner: r.owner === null || r.owner === undefined ? null : String(r.owner),
    resume: Boolean(r.resume) && r.resume !== "0",
    createdAt: String(r.created_at),
    updatedAt: String(r.updated_at),
  };
}

/** JSON for a column: attach results and errors can quote a server's URL, whose credentials are not stored. */
export const storedJson = (value: unknown): string => redactSecrets(JSON.stringify(value ?? null));

/** The columns an update sets, with their values, in order (`updated_at` last). */
export function updateColumns(fields: JobFields, now: string): [string, string | number][] {
  const out: [string, string | number][] = [];
  if (fields.state !== undefined) out.push(["state", fields.state]);
  if (fields.retries !== undefined) out.push(["retries", fields.retries]);
  if (fields.resume !== undefined) out.push(["resume", fields.resume ? 1 : 0]);
  for (const key of ["progress", "result", "error"] as const) {
    if (key in fields) out.push([key, storedJson(fields[key])]);
  }
  out.push(["updated_at", now]);
  return out;
}

const text = z.string({ error: "must be text" }).min(1, { error: "must not be empty" });
const common = { server: text, name: text, updated_at: text };

/** A row of the `desired` table as the database returns it; {@link toDesired} checks it. */
const DesiredRow = z.discriminatedUnion("state", [
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

/** A `desired` row read back from the store at `where`, checked. */
export function toDesired(row: unknown, where: string): Desired {
  const r0 = row as { server?: unknown; name?: unknown };
  const file = `${where}: table 'desired', row (${JSON.stringify(r0?.server)}, ${JSON.stringify(r0?.name)})`;
  const r = parseJsonValue(row, DesiredRow, { file, what: "desired-state row" });
  const base = { server: r.server, name: r.name, updatedAt: r.updated_at };
  if (r.state === "detached") return { state: "detached", ...base };
  return { state: "attached", ...base, adapter: r.adapter, version: r.version, path: r.path, rank: r.rank };
}

/** The columns of a desired row to write (null where a tombstone has none). */
export function desiredValues(row: Desired): (string | number | null)[] {
  const a = row.state === "attached" ? row : null;
  return [
    row.server,
    row.name,
    row.state,
    a?.adapter ?? null,
    a?.version ?? null,
    a?.path ?? null,
    a?.rank ?? null,
    row.updatedAt,
  ];
}

/**
 * Reading a JSON file through a zod schema, with errors that name the file and the field: the one mechanism every
 * file format's owning module uses (`adapter_config.json`, `flexora.json`, `checkpoint.json`, …).
 *
 * A message reads `<file>: '<field>' <what the schema says>, got <value>`; a field the schema names in its own
 * message (`error: "…"`) keeps that text.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { parseJsonText } from "./json_file.ts";
 * const schema = z.object({ r: z.number({ error: "must be a number" }) });
 * const err = (() => {
 *   try {
 *     parseJsonText('{"r": "8"}', schema, { file: "a/config.json", what: "config" });
 *   } catch (e) {
 *     return (e as Error).message;
 *   }
 * })();
 * if (err !== `a/config.json: 'r' must be a number, got "8"`) throw new Error(err);
 * ```
 *
 * @module
 */

import { z } from "zod";

/** How to name a file in errors, and the error to throw. */
export interface JsonFileContext {
  /** The file's path, which starts every message. */
  readonly file: string;
  /** What the file is ("adapter config", "checkpoint"): `cannot read the <what>`, `not a valid <what>`. */
  readonly what: string;
  /** Builds the thrown error from its message (default: `Error`). */
  readonly error?: (message: string) => Error;
}

/** The value at `path` inside `input`, or undefined. */
function at(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const key of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

/** `<file>: '<field>' <message>, got <value>` for the first issue of a failed parse. */
export function describeIssue(file: string, issue: z.core.$ZodIssue, input: unknown): string {
  const field = issue.path.map(String).join(".");
  const value = at(input, issue.path);
  if (issue.code === "unrecognized_keys") {
    return `${file}: ${field ? `'${field}' ` : ""}has unknown fields ${
      issue.keys.map((k) => `'${k}'`).join(", ")
    }`;
  }
  if (field === "") return `${file}: ${issue.message}`;
  const got = value === undefined ? "is missing" : `got ${JSON.stringify(value)}`;
  return `${file}: '${field}' ${issue.message}, ${got}`;
}

/** Parses `value` (already decoded JSON) with `schema`; throws naming the file and the first offending field. */
export function parseJsonValue<S extends z.ZodType>(
  value: unknown,
  schema: S,
  ctx: JsonFileContext,
): z.output<S> {
  const made = ctx.error ?? ((m: string) => new Error(m));
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw made(describeIssue(ctx.file, parsed.error.issues[0], value));
  return parsed.data;
}

/** Decodes `text` as a JSON object and parses it with `schema` (see {@link parseJsonValue}). */
export function parseJsonText<S extends z.ZodType>(
  text: string,
  schema: S,
  ctx: JsonFileContext,
): z.output<S> {
  const made = ctx.error ?? ((m: string) => new Error(m));
  let json: unknown;
  try {
    json = JSON.parse(text);
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new Error("not a JSON object");
    }
  } catch (e) {
    throw made(`${ctx.file}: not a valid ${ctx.what} (${(e as Error).message})`);
  }
  return parseJsonValue(json, schema, ctx);
}

/** Reads `file` and parses it with `schema`; a missing or unreadable file is `cannot read the <what>`. */
export async function readJsonFile<S extends z.ZodType>(
  file: string,
  schema: S,
  ctx: Omit<JsonFileContext, "file">,
): Promise<z.output<S>> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw (ctx.error ?? ((m: string) => new Error(m)))(
      `${file}: cannot read the ${ctx.what} (${(e as Error).message})`,
    );
  }
  return parseJsonText(text, schema, { ...ctx, file });
}

/** A JSON file's text as this project writes them: two-space indent, a final newline. */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, null, 2) + "\n";
}

/**
 * A number as JSON keeps it: `JSON.stringify` writes NaN and ±Infinity as null, so null reads back as NaN (a
 * metric that was not finite stays not finite).
 */
export const jsonNumber: z.ZodType<number, number | null> = z.union([z.number(), z.null()], {
  error: "must be a number",
})
  .transform((v) => v ?? NaN);

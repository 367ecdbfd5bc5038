/**
 * JSON Lines files: one JSON value per line; blank lines are skipped. Errors give `file:line` and the reason.
 *
 * @example
 * ```ts
 * import { parseJsonl } from "./jsonl.ts";
 * const rows = parseJsonl('{"text": "a"}\n\n{"text": "b"}\n', "mem.jsonl");
 * if (rows[1].line !== 3) throw new Error("line numbers count blank lines");
 * ```
 *
 * @module
 */

/** A parsed line and where it came from. */
export interface JsonlRow {
  readonly line: number;
  readonly value: unknown;
}

/** Thrown for a file that cannot be read or a malformed line. */
export class DataError extends Error {
  override name = "DataError";
}

/** Parses every non-blank line of `text` as JSON; `file` names the text in errors (`file:line`). */
export function parseJsonl(text: string, file: string): JsonlRow[] {
  const rows: JsonlRow[] = [];
  text.split("\n").forEach((raw, i) => {
    if (raw.trim() === "") return;
    try {
      rows.push({ line: i + 1, value: JSON.parse(raw) });
    } catch (e) {
      throw new DataError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
  });
  return rows;
}

/** Reads every non-blank line of `file` as JSON. */
export async function readJsonl(file: string): Promise<JsonlRow[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new DataError(`${file}: cannot read (${(e as Error).message})`);
  }
  return parseJsonl(text, file);
}

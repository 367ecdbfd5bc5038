/**
 * Kind-specific settings of a server (`ServerConfig.options`), read with their types checked, so a typo in a
 * configuration is an error naming the field and the value rather than a silent default.
 *
 * @module
 */

import { AttachError, type ServerConfig } from "./types.ts";

function bad(server: ServerConfig, key: string, want: string, got: unknown): AttachError {
  return new AttachError(
    `Server '${server.name}': 'options.${key}' must be ${want}, got ${JSON.stringify(got) ?? String(got)}`,
  );
}

/**
 * A string option, or undefined when absent.
 *
 * @example
 * ```ts
 * import { stringOption } from "./options.ts";
 * const server = { name: "s", kind: "lorax" as const, url: "http://127.0.0.1:1", options: { adapterDir: "/a" } };
 * if (stringOption(server, "adapterDir") !== "/a" || stringOption(server, "other") !== undefined) throw new Error();
 * ```
 */
export function stringOption(server: ServerConfig, key: string): string | undefined {
  const v = server.options?.[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string" || v === "") throw bad(server, key, "a non-empty string", v);
  return v;
}

/** A string option that must be present; `why` says what it is for. */
export function requiredString(server: ServerConfig, key: string, why: string): string {
  const v = stringOption(server, key);
  if (v === undefined) {
    throw new AttachError(`Server '${server.name}' (${server.kind}) needs 'options.${key}': ${why}`);
  }
  return v;
}

/** A positive integer option, or undefined when absent. */
export function positiveIntOption(server: ServerConfig, key: string): number | undefined {
  const v = server.options?.[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw bad(server, key, "a positive integer", v);
  }
  return v;
}

/**
 * The one rule for adapter, job and server names. Names become folder names (`<data-dir>/adapters/<name>`) and
 * appear in URLs and on command lines, so a name must be one safe path segment: 1 to 64 characters of
 * `A-Z a-z 0-9 . _ -`, starting with a letter, a digit or `_` (so never `.`, `..`, a hidden file or an option).
 *
 * @example
 * ```ts
 * import { isSafeName, nameProblem } from "./safe_name.ts";
 * if (!isSafeName("sql-v2.1") || isSafeName("..") || isSafeName("a/b")) throw new Error("the rule");
 * if (!nameProblem(".").includes("got \".\"")) throw new Error("names the value");
 * ```
 *
 * @module
 */

const PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;

/** The rule, as error messages and docs state it. */
export const NAME_RULE = "1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter, digit or _";

/** True when `name` follows the rule (module doc). */
export function isSafeName(name: unknown): name is string {
  return typeof name === "string" && PATTERN.test(name);
}

/** What is wrong with a name that breaks the rule: `must be NAME_RULE, got "..."` (for error messages). */
export function nameProblem(name: unknown): string {
  return `must be ${NAME_RULE}, got ${JSON.stringify(name) ?? String(name)}`;
}

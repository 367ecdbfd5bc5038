/**
 * Reading typed values from parsed command-line options, with errors that name the option and the value.
 *
 * @module
 */

import { UsageError } from "./command.ts";

type Values = Record<string, unknown>;

/** A required string option. */
export function requireString(values: Values, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`--${name} is required`);
  return v;
}

/** An optional number option within [min, max] (or > 0 with `positive`); `integer` demands an integer. */
export function numberOption(
  values: Values,
  name: string,
  { min = -Infinity, max = Infinity, integer = false, positive = false } = {},
): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  const low = positive ? n <= 0 : n < min;
  if (v === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || low || n > max) {
    const what = integer ? "an integer" : "a number";
    const lo = positive ? "> 0" : min > -Infinity ? `>= ${min}` : "";
    const range = [lo, max < Infinity ? `<= ${max}` : ""].filter(Boolean).join(" and ");
    throw new UsageError(`--${name} must be ${what}${range ? ` ${range}` : ""}, got '${v}'`);
  }
  return n;
}

/** A comma-separated list of integers, such as `--prompt-ids 1,2,3`. */
export function idsOption(values: Values, name: string): number[] | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const ids = String(v).split(",").map((s) => s.trim());
  const bad = ids.find((s) => !/^\d+$/.test(s));
  if (bad !== undefined) {
    throw new UsageError(`--${name} must be comma-separated token ids, got '${v}' ('${bad}')`);
  }
  return ids.map(Number);
}

/** One of a fixed set of strings. */
export function choiceOption<T extends string>(
  values: Values,
  name: string,
  choices: readonly T[],
  fallback: T,
): T {
  const v = values[name] ?? fallback;
  if (!choices.includes(v as T)) {
    throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got '${v}'`);
  }
  return v as T;
}

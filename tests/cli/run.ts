/**
 * Running the CLI in-process for tests: {@link flexora} calls `main` with an `Io` that keeps every line.
 *
 * @module
 */

import { join } from "node:path";
import { main } from "../../src/cli/main.ts";
import { ROOT } from "../model/shared.ts";

/** The project's own tiny random Llama (word-level tokenizer). */
export const TINY: string = join(ROOT, "fixtures", "tiny-llama");
/** The project's own tiny dataset: {prompt, completion, choices, label} rows. */
export const TINY_DATA: string = join(ROOT, "fixtures", "tiny-data");

/** What one CLI run printed, and its exit code. */
export interface CliResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Runs `flexora ...args` in-process; stdout and stderr lines are joined with newlines. */
export async function flexora(...args: string[]): Promise<CliResult> {
  const out: string[] = [], err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** Runs `flexora ...args`, asserts it succeeded, and parses its single stdout line as JSON. */
export async function flexoraJson(...args: string[]): Promise<Record<string, unknown>> {
  const r = await flexora(...args);
  if (r.code !== 0) throw new Error(`flexora ${args.join(" ")} exited ${r.code}: ${r.err}`);
  return JSON.parse(r.out);
}

/** Writes `lines` (values are JSON-encoded, strings kept as they are) to a new temp file; returns its path. */
export async function tempJsonl(dir: string, name: string, lines: readonly unknown[]): Promise<string> {
  const file = join(dir, name);
  const text = lines.map((l) => typeof l === "string" ? l : JSON.stringify(l)).join("\n");
  await Deno.writeTextFile(file, lines.length ? text + "\n" : "");
  return file;
}

/** A multiple-choice row as the tiny dataset stores it. */
export interface TinyRow {
  prompt: string;
  completion: string;
  choices: string[];
  label: number;
}

/** The rows of a tiny-data split. */
export async function tinyRows(split: string): Promise<TinyRow[]> {
  const text = await Deno.readTextFile(join(TINY_DATA, `${split}.jsonl`));
  return text.trimEnd().split("\n").map((line) => JSON.parse(line) as TinyRow);
}

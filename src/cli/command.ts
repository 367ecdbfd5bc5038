/**
 * The shape of a CLI command: options in `node:util` `parseArgs` form (JSR's `@std/cli` cannot be reached from
 * the machines this project is built on), a summary for `--help`, and a run function.
 *
 * @module
 */

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/** Where a command writes; tests pass their own. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

/** One CLI command. Every command takes `--help` and `--json`. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Usage line after `flexora <name>`, e.g. `--model DIR [--json]`. */
  readonly usage: string;
  readonly options: ParseArgsOptionsConfig;
  /** Option descriptions for `--help`, by option name. */
  readonly help: Readonly<Record<string, string>>;
  run(values: Record<string, unknown>, positionals: string[], io: Io): Promise<number>;
}

/** The process's console (stdout and stderr). */
export const consoleIo: Io = { out: (l) => console.log(l), err: (l) => console.error(l) };

/** Thrown for bad command-line input; exit code 2 (other errors exit 1). */
export class UsageError extends Error {
  override name = "UsageError";
}

const COMMON: ParseArgsOptionsConfig = {
  help: { type: "boolean", short: "h" },
  json: { type: "boolean" },
  debug: { type: "boolean" },
};

/** The help text of a command. */
export function helpText(cmd: Command): string {
  const lines = [`flexora ${cmd.name} ${cmd.usage}`, "", cmd.summary, "", "Options:"];
  const entries = {
    ...cmd.help,
    help: "show this help",
    json: "print one machine-readable JSON result",
    debug: "print stack traces of errors",
  };
  const width = Math.max(...Object.keys(entries).map((k) => k.length)) + 4;
  for (const [name, text] of Object.entries(entries)) lines.push(`  --${name.padEnd(width)}${text}`);
  return lines.join("\n");
}

/**
 * Parses a command's arguments as `runCommand` does, without running it: throws `node:util`'s error for an
 * unknown option or a missing or surplus value.
 *
 * @example A command line checked without running the command
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandArgs } from "./command.ts";
 * import { exportGgufCommand } from "./export_gguf.ts";
 *
 * const { values } = parseCommandArgs(exportGgufCommand, ["--model", "M", "--out", "m.gguf", "--json"]);
 * assert.equal(values.out, "m.gguf");
 * assert.throws(() => parseCommandArgs(exportGgufCommand, ["--model", "M", "--bogus"]), /bogus/);
 * ```
 */
export function parseCommandArgs(
  cmd: Command,
  args: string[],
): { values: Record<string, unknown>; positionals: string[] } {
  return parseArgs({ args, options: { ...COMMON, ...cmd.options }, allowPositionals: true, strict: true });
}

/** Parses a command's arguments and runs it; returns the exit code. */
export async function runCommand(cmd: Command, args: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandArgs(cmd, args);
  } catch (e) {
    io.err(`flexora ${cmd.name}: ${(e as Error).message}\nRun 'flexora ${cmd.name} --help' for the options.`);
    return 2;
  }
  if (parsed.values.help) {
    io.out(helpText(cmd));
    return 0;
  }
  try {
    return await cmd.run(parsed.values, parsed.positionals, io);
  } catch (e) {
    if (!(e instanceof Error)) throw e;
    // Errors name what was wrong and the value seen; the stack helps only when debugging flexora itself.
    io.err(`flexora ${cmd.name}: ${parsed.values.debug ? e.stack : e.message}`);
    return e instanceof UsageError ? 2 : 1;
  }
}

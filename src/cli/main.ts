/**
 * `deno task flexora <command>`: the command-line entry point.
 *
 * @module
 */

import { type Command, consoleIo, type Io, runCommand } from "./command.ts";
import { compareCommand } from "./compare.ts";
import { exportGgufCommand } from "./export_gguf.ts";
import { finetuneCommand } from "./finetune.ts";
import { generateCommand } from "./generate.ts";
import { plotCommand } from "./plot.ts";
import { scoreCommand } from "./score.ts";
import { serveCommand } from "./serve.ts";
import { version } from "./version.ts";

/** Every command, in the order `--help` lists them. */
export const COMMANDS: readonly Command[] = [
  finetuneCommand,
  compareCommand,
  generateCommand,
  scoreCommand,
  plotCommand,
  exportGgufCommand,
  serveCommand,
  version,
];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    "flexora: Flexora layer selection for LoRA on onnxruntime, and adapters hot-loaded into inference servers.",
    "",
    "Usage: deno task flexora <command> [options]",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    "",
    "Run 'deno task flexora <command> --help' for a command's options; 'flexora --version' for versions.",
  ].join("\n");
}

/** Runs the CLI on `args`; returns the exit code. */
export async function main(args: string[], io: Io = consoleIo): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.out(overview());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V") return await runCommand(version, rest, io);
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    io.err(`flexora: unknown command '${name}'. Commands: ${COMMANDS.map((c) => c.name).join(", ")}.`);
    return 2;
  }
  return await runCommand(cmd, rest, io);
}

if (import.meta.main) Deno.exit(await main(Deno.args));

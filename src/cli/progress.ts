/**
 * Progress on the command line: a bar per stage on a terminal, plain log lines otherwise (every 10 % of a stage),
 * always on stderr so `--json` output on stdout stays clean.
 *
 * @module
 */

import type { ProgressEvent } from "../flexora/progress.ts";
import type { DownloadProgress } from "../hub/download.ts";
import { consoleIo, type Io } from "./command.ts";

function clock(seconds: number): string {
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** One line describing a progress event (without the bar). */
export function describeProgress(e: ProgressEvent): string {
  if (e.message) return `${e.stage}: ${e.message}`;
  const parts = [`${e.stage} ${e.step}/${e.total}`];
  if (e.loss !== undefined) parts.push(`loss ${e.loss.toFixed(4)}`);
  if (e.valLoss !== undefined) parts.push(`val ${e.valLoss.toFixed(4)}`);
  if (e.gates) parts.push(`gates ${e.gates.map((g) => g.toFixed(2)).join(" ")}`);
  parts.push(`${clock(e.elapsed)} elapsed, ETA ${clock(e.eta)}`);
  return parts.join(", ");
}

/**
 * A progress reporter for a command's `io`: a redrawn bar when `io` is the console and stderr a terminal, else
 * sparse lines through `io.err`.
 */
export function progressReporter(io: Io): (e: ProgressEvent) => void {
  const terminal = io === consoleIo && Deno.stderr.isTerminal();
  const write = terminal
    ? (t: string) => void Deno.stderr.writeSync(new TextEncoder().encode(t))
    : (t: string) => io.err(t.replace(/\n$/, ""));
  let lastStage = "", lastTenth = -1, open = false;
  return (e) => {
    if (e.message) {
      write(`${open ? "\n" : ""}${describeProgress(e)}\n`);
      open = false;
      return;
    }
    if (terminal) {
      const width = 24, filled = Math.round((e.step / e.total) * width);
      const bar = "█".repeat(filled) + "░".repeat(width - filled);
      write(`\r\x1b[2K${e.stage} ${bar} ${describeProgress(e).slice(e.stage.length + 1)}`);
      open = e.step < e.total;
      if (!open) write("\n");
      return;
    }
    const tenth = Math.floor((e.step / e.total) * 10);
    if (e.stage !== lastStage || tenth !== lastTenth || e.step === e.total) {
      if (e.stage === lastStage && tenth === lastTenth && e.step !== e.total) return;
      write(`${describeProgress(e)}\n`);
      [lastStage, lastTenth] = [e.stage, tenth];
    }
  };
}

/** A reporter of Hub downloads for a command's `io`: a redrawn bar per file on a terminal, else a line per 25 %. */
export function downloadReporter(io: Io): (p: DownloadProgress) => void {
  const terminal = io === consoleIo && Deno.stderr.isTerminal();
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  let lastFile = "", lastQuarter = -1;
  return (p) => {
    const fraction = p.total > 0 ? p.received / p.total : 1;
    const text = `download ${p.file} ${mib(p.received)}/${mib(p.total)}`;
    if (terminal) {
      const width = 24, filled = Math.round(fraction * width);
      const line = `\r\x1b[2K${text} ${"█".repeat(filled)}${"░".repeat(width - filled)}`;
      Deno.stderr.writeSync(new TextEncoder().encode(line + (fraction >= 1 ? "\n" : "")));
      return;
    }
    const quarter = Math.floor(fraction * 4);
    if (p.file === lastFile && quarter === lastQuarter) return;
    [lastFile, lastQuarter] = [p.file, quarter];
    io.err(text);
  };
}

/**
 * The job runner as a child process: how the sidecar starts `runner.ts` on a spec file, what it may reach, and the
 * handle the job manager drives it through (events from its stdout, `stop` on its stdin, signals, its exit).
 *
 * @module
 */

import { fileURLToPath as fromFileUrl } from "node:url";
import { readEvents, type RunnerEvent } from "./protocol.ts";

/** How a runner process ended: its exit code, or the signal that killed it. */
export interface RunnerExit {
  readonly code: number;
  readonly signal: Deno.Signal | null;
}

/** A running child. */
export interface RunnerHandle {
  readonly events: AsyncIterable<RunnerEvent>;
  /** Asks the run to stop between steps (it checkpoints first). */
  stop(): void;
  /** Sends the process a signal (nothing when it has exited). */
  kill(signal: "SIGTERM" | "SIGKILL"): void;
  readonly exited: Promise<RunnerExit>;
}

/** What a runner may reach besides the files. */
export interface SpawnOptions {
  /** Network access, for a job whose model is a Hub id (it downloads it); local jobs run without. */
  readonly network: boolean;
}

/** Starts a runner for a spec file. */
export type Spawn = (specFile: string, options: SpawnOptions) => RunnerHandle;

const RUNNER = fromFileUrl(new URL("./runner.ts", import.meta.url));
const ROOT = fromFileUrl(new URL("../../", import.meta.url));

/**
 * The runner's command line: Deno running `runner.ts` on `specFile` with file, FFI, environment and system
 * access, and the network only when `options.network`; run from the project's root.
 */
export function runnerCommand(
  specFile: string,
  options: SpawnOptions,
): { readonly command: string; readonly args: string[]; readonly cwd: string } {
  const allow = ["--allow-read", "--allow-write", "--allow-env", "--allow-ffi", "--allow-sys"];
  if (options.network) allow.push("--allow-net");
  return { command: Deno.execPath(), args: ["run", ...allow, RUNNER, specFile], cwd: ROOT };
}

/** Runs `runner.ts` with Deno in a child process, events read from its stdout. */
export function spawnRunner(specFile: string, options: SpawnOptions = { network: false }): RunnerHandle {
  const { command, args, cwd } = runnerCommand(specFile, options);
  const child = new Deno.Command(command, { args, cwd, stdin: "piped", stdout: "piped", stderr: "inherit" })
    .spawn();
  const writer = child.stdin.getWriter();
  return {
    events: readEvents(child.stdout),
    stop: () => void writer.write(new TextEncoder().encode("stop\n")).catch(() => {}),
    kill: (signal) => {
      try {
        child.kill(signal);
      } catch { /* it has exited */ }
    },
    exited: child.status.then((s) => (writer.close().catch(() => {}), { code: s.code, signal: s.signal })),
  };
}

/**
 * Peak resident memory of a LoRA train step, measured in a process that does nothing else: run as a worker
 * (`deno run … bench/train_memory.ts '<json options>'`, which prints the result as JSON), or in-process when
 * this process may not start one (`deno task bench` lacks `--allow-run`).
 *
 * The peak is `VmHWM` from `/proc/self/status` where Deno lets a script read it (it demands `--allow-all` for
 * `/proc/self`), otherwise `getrusage`'s `ru_maxrss`: the same kernel high-water mark, which `node:process`
 * exposes without extra permissions.
 *
 * @module
 */

import process from "node:process";
import { openModelDir, openStepSession, type StepVariant, type TrainBenchOptions } from "./train.ts";

/** Where a peak figure came from. */
export type PeakSource = "VmHWM" | "ru_maxrss";

/** Peak resident set size of this process so far, in bytes. */
export function peakRss(): { bytes: number; source: PeakSource } {
  try {
    const kb = Deno.readTextFileSync("/proc/self/status").match(/^VmHWM:\s+(\d+) kB$/m);
    if (kb) return { bytes: Number(kb[1]) * 1024, source: "VmHWM" };
  } catch {
    // NotCapable without --allow-all, or no procfs: fall back to getrusage.
  }
  return { bytes: process.resourceUsage().maxRSS * 1024, source: "ru_maxrss" };
}

/** One variant's memory, in bytes. */
export interface MemoryResult {
  readonly name: string;
  readonly layers: readonly number[];
  /** Resident before reading the checkpoint, after creating the session, and the process peak after the steps. */
  readonly rssBefore: number;
  readonly rssAfterSession: number;
  /** The peak after the first step: the steps after it should not raise it. */
  readonly peakAfterFirstStep: number;
  readonly peakRss: number;
  readonly peakSource: PeakSource;
  /** True when measured in a worker process of its own. */
  readonly isolated: boolean;
}

/** Opens the variant's session, runs `warmup + runs` steps (at least one), and reads the process peak. */
export async function measureStepMemory(o: TrainBenchOptions, variant: StepVariant): Promise<MemoryResult> {
  const rssBefore = Deno.memoryUsage().rss;
  const step = await openStepSession(await openModelDir(o.dir), variant, o.batch, o.seq);
  const rssAfterSession = Deno.memoryUsage().rss;
  await step.run();
  const peakAfterFirstStep = peakRss().bytes;
  for (let i = 1; i < o.warmup + o.runs; i++) await step.run();
  const peak = peakRss();
  await step.session.release();
  return {
    name: variant.name,
    layers: [...variant.layers],
    rssBefore,
    rssAfterSession,
    peakAfterFirstStep,
    peakRss: peak.bytes,
    peakSource: peak.source,
    isolated: false,
  };
}

/** Permissions the worker needs (those of `deno task bench`). */
const WORKER_FLAGS = ["--allow-read", "--allow-write", "--allow-env", "--allow-ffi", "--allow-sys"];

/** True when this process may start workers (`--allow-run`). */
export function canStartWorkers(): boolean {
  return Deno.permissions.querySync({ name: "run" }).state === "granted";
}

/** {@link measureStepMemory} in a fresh `deno run` process. */
export async function measureStepMemoryIsolated(
  o: TrainBenchOptions,
  variant: StepVariant,
): Promise<MemoryResult> {
  const script = new URL("./train_memory.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...WORKER_FLAGS, script, JSON.stringify({ options: o, variant })],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`memory worker for '${variant.name}' exited with code ${out.code}`);
  return { ...JSON.parse(new TextDecoder().decode(out.stdout)), isolated: true };
}

if (import.meta.main) {
  const { options, variant } = JSON.parse(Deno.args[0]);
  console.log(JSON.stringify(await measureStepMemory(options, variant)));
}

/**
 * Peak resident memory of a LoRA train step, measured in a process that does nothing else: run as a worker
 * (`deno run … bench/train_memory.ts '<json options>'`, which prints the result as JSON), or in-process when
 * this process may not start one (`deno task bench` lacks `--allow-run`).
 *
 * The peak is {@link peakRss}'s: a worker runs with `--allow-all` so that it reads its own `VmHWM` (`ru_maxrss`
 * would start from the parent's peak, masking small models).
 *
 * @module
 */

import { peakRss, type PeakSource } from "../src/util/memory.ts";
import { openModelDir, openStepSession, type StepVariant, type TrainBenchOptions } from "./train.ts";

/** One variant's memory, in bytes. */
export interface MemoryResult {
  readonly name: string;
  readonly layers: readonly number[];
  /** The batch shape, B × T. */
  readonly batch: number;
  readonly seq: number;
  /** Resident before reading the checkpoint, after creating the session, and the process peak after the steps. */
  readonly rssBefore: number;
  readonly rssAfterSession: number;
  /** The peak after the first step: the steps after it should not raise it. */
  readonly peakAfterFirstStep: number;
  readonly peakRss: number;
  readonly peakSource: PeakSource;
  /**
   * Seconds from reading the model directory (config and checkpoint header) to an open session, and of the first
   * step: their sum is the time to the first step.
   */
  readonly sessionSeconds: number;
  readonly firstStepSeconds: number;
  /** Seconds of each step after the first. */
  readonly stepSeconds: number[];
  /** True when measured in a worker process of its own. */
  readonly isolated: boolean;
}

/** Opens the variant's session, runs `warmup + runs` steps (at least one), and reads the process peak. */
export async function measureStepMemory(o: TrainBenchOptions, variant: StepVariant): Promise<MemoryResult> {
  const rssBefore = Deno.memoryUsage().rss;
  const t0 = performance.now();
  const step = await openStepSession(await openModelDir(o.dir, variant.baseDtype), variant, o.batch, o.seq);
  const t1 = performance.now();
  const rssAfterSession = Deno.memoryUsage().rss;
  await step.run();
  const firstStepSeconds = (performance.now() - t1) / 1000;
  const peakAfterFirstStep = peakRss().bytes;
  const stepSeconds: number[] = [];
  for (let i = 1; i < o.warmup + o.runs; i++) {
    const t = performance.now();
    await step.run();
    stepSeconds.push((performance.now() - t) / 1000);
  }
  const peak = peakRss();
  await step.session.release();
  return {
    name: variant.name,
    layers: [...variant.layers],
    batch: o.batch,
    seq: o.seq,
    rssBefore,
    rssAfterSession,
    peakAfterFirstStep,
    peakRss: peak.bytes,
    peakSource: peak.source,
    sessionSeconds: (t1 - t0) / 1000,
    firstStepSeconds,
    stepSeconds,
    isolated: false,
  };
}

/** The worker's permissions: all, since Deno lets only such a script read `/proc/self/status` (its `VmHWM`). */
const WORKER_FLAGS = ["--allow-all"];

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

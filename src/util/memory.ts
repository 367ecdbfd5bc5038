/**
 * This process's peak resident memory, for job summaries and benchmarks.
 *
 * The peak is `VmHWM` from `/proc/self/status` where Deno lets a script read it (it demands `--allow-all` for
 * `/proc/self`), otherwise `getrusage`'s `ru_maxrss`: the same kernel high-water mark, which `node:process`
 * exposes without extra permissions, but which a process started by another one starts from its parent's peak.
 *
 * @example
 * ```ts
 * import { peakRss } from "./memory.ts";
 * const { bytes } = peakRss();
 * if (!(bytes > 0)) throw new Error("a running process has resident memory");
 * ```
 *
 * @module
 */

import process from "node:process";

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

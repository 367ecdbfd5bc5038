/**
 * `deno task bench --vs-torch`: the train-step variants against `../shared/bench/torch_peer.py`, the plain
 * PyTorch peer of the same step (read its docstring), when `/usr/bin/python3` has torch. Each pair runs a
 * flexora memory worker and a peer process for one variant, alternately, so that the machine's load drifts
 * affect both alike; each prints its step times and peak RSS (flexora's VmHWM, the peer's `ru_maxrss`), and the
 * report gives their ratios.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { median } from "./stats.ts";
import type { StepVariant, TrainBenchOptions } from "./train.ts";
import { measureStepMemoryIsolated } from "./train_memory.ts";

/** The peer script, read in place. */
export const TORCH_PEER = fileURLToPath(new URL("../../shared/bench/torch_peer.py", import.meta.url));

/** The Python that has Debian's torch. */
const PYTHON = "/usr/bin/python3";

/** Null when the peer can run here, else why not. */
export async function torchUnavailable(): Promise<string | null> {
  try {
    await Deno.stat(TORCH_PEER);
  } catch {
    return `no peer script at ${TORCH_PEER}`;
  }
  try {
    const out = await new Deno.Command(PYTHON, { args: ["-c", "import torch"], stderr: "null" }).output();
    return out.success
      ? null
      : `${PYTHON} cannot import torch (apt install python3-torch libopenblas0-pthread)`;
  } catch {
    return `no ${PYTHON}`;
  }
}

/** One variant's pairs: flexora's and the peer's median step seconds and peak RSS per pair. */
export interface VsTorchResult {
  readonly name: string;
  readonly flexora: { seconds: number; peakRss: number }[];
  readonly torch: { seconds: number; peakRss: number }[];
  /** Medians over pairs of flexora ÷ torch. */
  readonly timeRatio: number;
  readonly peakRatio: number;
}

/** The peer's `--layers` for a variant: all, or the top 3. */
function peerLayers(v: StepVariant, numLayers: number): "all" | "top3" {
  if (v.layers.length === numLayers) return "all";
  if (v.layers.length === 3 && v.layers[0] === numLayers - 3) return "top3";
  throw new Error(`the torch peer runs all layers or the top 3, not [${v.layers}]`);
}

/** Runs `pairs` alternating flexora / peer processes per variant on the peer's `config` (its name of the shape). */
export async function benchVsTorch(
  o: TrainBenchOptions,
  config: string,
  numLayers: number,
  variants: readonly StepVariant[],
  pairs: number,
  log: (line: string) => void = () => {},
): Promise<VsTorchResult[]> {
  const results: VsTorchResult[] = [];
  for (const v of variants) {
    const flexora: VsTorchResult["flexora"] = [], torch: VsTorchResult["torch"] = [];
    for (let i = 0; i < pairs; i++) {
      const f = await measureStepMemoryIsolated(o, v);
      flexora.push({ seconds: median(f.stepSeconds.slice(-o.runs)), peakRss: f.peakRss }); // its first step is a warm-up
      const args = [
        TORCH_PEER,
        ...["--config", config, "--layers", peerLayers(v, numLayers)],
        ...["--batch", String(o.batch), "--seq", String(o.seq)],
        ...["--warmup", String(o.warmup), "--steps", String(o.runs), "--json"],
        ...(v.forwardOnly ? ["--forward-only"] : []),
      ];
      const out = await new Deno.Command(PYTHON, { args, stdout: "piped", stderr: "inherit" }).output();
      if (!out.success) throw new Error(`torch peer for '${v.name}' exited with code ${out.code}`);
      const r = JSON.parse(new TextDecoder().decode(out.stdout));
      torch.push({ seconds: r.median, peakRss: r.peak_rss });
      log(
        `vs torch ${v.name}, pair ${i + 1}: ${flexora[i].seconds.toFixed(2)} vs ${
          torch[i].seconds.toFixed(2)
        } s, ` +
          `${(flexora[i].peakRss / 2 ** 20).toFixed(0)} vs ${(torch[i].peakRss / 2 ** 20).toFixed(0)} MiB`,
      );
    }
    results.push({
      name: v.name,
      flexora,
      torch,
      timeRatio: median(flexora.map((f, i) => f.seconds / torch[i].seconds)),
      peakRatio: median(flexora.map((f, i) => f.peakRss / torch[i].peakRss)),
    });
  }
  return results;
}

/**
 * What `deno task bench` measured, the ratios held against the targets of issue #3, and their text form.
 *
 * @module
 */

import type { ModelConfig } from "../src/model/config.ts";
import type { GenerateResult } from "./generate.ts";
import type { MatmulResult } from "./matmul.ts";
import type { QueueResult } from "./queue.ts";
import { median } from "./stats.ts";
import type { InterleavedTimings, StepTiming } from "./train.ts";
import type { MemoryResult } from "./train_memory.ts";
import type { VsTorchResult } from "./vs_torch.ts";

/** Everything one run measured; parts that were not run are absent. */
export interface Report {
  threads: number;
  quick: boolean;
  /** Per-shape results; `best` and `median` over the model's [2048, ·] projection shapes, GFLOP/s. */
  matmul?: { results: MatmulResult[]; best: number; median: number };
  model?: { parameters: number; weightBytes: number; config: ModelConfig; batch: number; seq: number };
  train?: InterleavedTimings;
  memory?: MemoryResult[];
  generate?: GenerateResult[];
  vsTorch?: VsTorchResult[];
  queue?: QueueResult;
  summary?: Summary;
}

/** The targets of issue #3 and the measured ratios (null where a part was not run). */
export interface Summary {
  /** Median GEMM probe rate over the train rounds, GFLOP/s. */
  gemmGflops: number | null;
  /** Achieved FLOP/s (counted FLOPs / median step time) over `gemmGflops`, per variant (target ≥ 0.75). */
  overGemm: Record<string, number> | null;
  /**
   * Top-3 step time over the all-layer step time (target ≤ 0.55): the median over rounds of the ratio within
   * a round, since both steps of a round see about the same load; and the same ratio of counted FLOPs.
   */
  top3OverAllTime: number | null;
  top3OverAllFlops: number | null;
  /** The top-3 retraining step with the frozen-prefix cache over the all-layer step, likewise (target ≤ 0.45). */
  cachedOverAllTime: number | null;
  /** Peak RSS over weight bytes, per train variant (target ≤ 2). */
  peakOverWeights: Record<string, number> | null;
}

/** Targets of issue #3, item 10. */
export const TARGETS = {
  gemmFraction: 0.75,
  top3TimeRatio: 0.55,
  cachedTimeRatio: 0.45,
  peakOverWeights: 2,
} as const;

/** The ratios of a report. */
export function summarize(r: Report): Summary {
  const train = r.train;
  const step = (name: string) => train?.steps.find((t) => t.name === name);
  const all = step("all layers"), top3 = step("top 3 layers"), cached = step("top 3, prefix cached");
  const gemm = train ? median(train.probeGflops) : null;
  return {
    gemmGflops: gemm,
    overGemm: train && gemm ? Object.fromEntries(train.steps.map((t) => [t.name, t.gflops / gemm])) : null,
    top3OverAllTime: all && top3 ? median(all.seconds.map((t, i) => top3.seconds[i] / t)) : null,
    top3OverAllFlops: all && top3 ? top3.flops / all.flops : null,
    cachedOverAllTime: all && cached ? median(all.seconds.map((t, i) => cached.seconds[i] / t)) : null,
    peakOverWeights: r.memory && r.model
      ? Object.fromEntries(r.memory.map((m) => [m.name, m.peakRss / r.model!.weightBytes]))
      : null,
  };
}

const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const verdict = (ok: boolean) => (ok ? "met" : "MISSED");

/** Prints a report for people. */
export function printReport(r: Report): void {
  const s = r.summary ?? summarize(r);
  if (r.quick) {
    console.log("--quick: a smoke test on a small model; its ratios say nothing about the targets");
  }
  if (r.matmul) {
    for (const { m, k, n, seconds, gflops } of r.matmul.results) {
      console.log(
        `matmul [${m},${k}]@[${k},${n}] float32: ${(seconds * 1e3).toFixed(2)} ms, ${
          gflops.toFixed(1)
        } GFLOP/s`,
      );
    }
    console.log(
      `GEMM rate (projection shapes): median ${r.matmul.median.toFixed(1)}, best ${
        r.matmul.best.toFixed(1)
      } GFLOP/s on ${r.threads} threads`,
    );
  }
  for (const q of r.queue?.bySidecars ?? []) {
    console.log(
      `queue, ${q.sidecars} sidecar(s): claim p50 ${q.claimP50Ms.toFixed(1)} ms, p99 ${
        q.claimP99Ms.toFixed(1)
      } ms, ${q.jobsPerMinute.toFixed(0)} jobs/min`,
    );
  }
  if (r.model) {
    const { parameters, weightBytes, batch, seq } = r.model;
    console.log(
      `model: ${(parameters / 1e6).toFixed(1)}M parameters (${
        MiB(weightBytes)
      } F32), batch ${batch} × ${seq}`,
    );
  }
  if (r.train) {
    const probe = r.train.probeGflops;
    console.log(
      `GEMM probe [2048,768]@[768,2048] per round: ${probe.map((x) => x.toFixed(1)).join(", ")}; median ${
        s.gemmGflops?.toFixed(1)
      } GFLOP/s`,
    );
  }
  for (const t of r.train?.steps ?? []) printStep(t, s.overGemm?.[t.name] ?? NaN);
  if (s.top3OverAllTime !== null && s.top3OverAllFlops !== null) {
    console.log(
      `top-3 / all-layer step time: ${s.top3OverAllTime.toFixed(2)} (counted FLOPs ${
        s.top3OverAllFlops.toFixed(2)
      }; target ≤ ${TARGETS.top3TimeRatio}: ${verdict(s.top3OverAllTime <= TARGETS.top3TimeRatio)})`,
    );
  }
  if (s.cachedOverAllTime !== null && s.cachedOverAllTime !== undefined) {
    console.log(
      `top-3 with the frozen-prefix cache / all-layer step time: ${
        s.cachedOverAllTime.toFixed(2)
      } (target ≤ ${TARGETS.cachedTimeRatio}: ${verdict(s.cachedOverAllTime <= TARGETS.cachedTimeRatio)})`,
    );
  }
  for (const m of r.memory ?? []) {
    const ratio = s.peakOverWeights?.[m.name] ?? NaN;
    console.log(
      `memory ${m.name}: peak ${MiB(m.peakRss)} (${m.peakSource}, ${
        m.isolated ? "own process" : "this process"
      }), ${MiB(m.peakAfterFirstStep)} after the first step, ${
        MiB(m.rssAfterSession)
      } after session creation, ${MiB(m.rssBefore)} before; ${m.batch}×${m.seq}; session ${
        m.sessionSeconds.toFixed(1)
      } s, first step ${m.firstStepSeconds.toFixed(1)} s (time to first step ${
        (m.sessionSeconds + m.firstStepSeconds).toFixed(1)
      } s${firstOverSteady(m)}); ` +
        `peak / weights ${ratio.toFixed(2)} (target ≤ ${TARGETS.peakOverWeights}: ${
          verdict(ratio <= TARGETS.peakOverWeights)
        })`,
    );
  }
  for (const v of r.vsTorch ?? []) {
    console.log(
      `vs torch ${v.name}: step time flexora ÷ torch ${v.timeRatio.toFixed(2)}, peak RSS ${
        v.peakRatio.toFixed(2)
      } (medians of ${v.flexora.length} alternating pairs of processes)`,
    );
  }
  for (const g of r.generate ?? []) {
    console.log(
      `generate ${g.model}: ${
        g.tokensPerSecond.toFixed(1)
      } tokens/s (${g.newTokens} new after ${g.promptTokens}, ` +
        `median ${(g.median * 1e3).toFixed(0)} ms of ${
          g.seconds.map((x) => (x * 1e3).toFixed(0)).join(", ")
        })`,
    );
  }
}

/** `, first / steady step 1.08×` when steps followed the first (the steady step: their median). */
function firstOverSteady(m: MemoryResult): string {
  return m.stepSeconds.length
    ? `, first / steady step ${(m.firstStepSeconds / median(m.stepSeconds)).toFixed(2)}×`
    : "";
}

function printStep(t: StepTiming, overGemm: number): void {
  const target = t.forwardOnly
    ? ""
    : `; target ≥ ${TARGETS.gemmFraction}: ${verdict(overGemm >= TARGETS.gemmFraction)}`;
  console.log(
    `train ${t.name}: ${t.median.toFixed(2)} s/step (rounds ${
      t.seconds.map((x) => x.toFixed(2)).join(", ")
    }), ` +
      `${t.tokensPerSecond.toFixed(0)} tokens/s, ${(t.flops / 1e9).toFixed(1)} GFLOP counted ` +
      `(graph MatMuls ${(t.graphMatmulFlops / 1e9).toFixed(1)}) → ${t.gflops.toFixed(1)} GFLOP/s; ` +
      `/ GEMM probe ${overGemm.toFixed(2)}${target}; first steps ${
        t.warmupSeconds.map((x) => `${x.toFixed(2)} s (${(x / t.median).toFixed(2)}×)`).join(", ")
      }`,
  );
}

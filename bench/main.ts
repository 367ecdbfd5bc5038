/**
 * `deno task bench`: runs the benchmarks and prints medians (`--json` for machine-readable output).
 * Results and the commands that produced them are kept in BENCHMARKS.md.
 *
 * Parts (all by default; `--only matmul,train` picks some):
 * - `matmul`: ORT MatMul GFLOP/s, the ceiling the train step is held against;
 * - `train`: LoRA train-step tokens/s and achieved FLOP/s of a seeded random ~100M Llama, LoRA on all layers
 *   and on the top 3, plus a forward-only pass, timed in interleaved rounds that each also measure the
 *   [2048,768]@[768,2048] GEMM rate (the ceiling the FLOP rates are divided by is the median of those);
 * - `memory`: peak RSS of each train step over the weight bytes, each in a worker process of its own when
 *   `--allow-run` is granted (otherwise in this process, top-3 first, since the peak only grows);
 * - `generate`: greedy KV-cache generation tokens/s for stories260K and the random model;
 * - `queue` (only when named: it needs PostgreSQL's binaries): 200 jobs queued on one throwaway PostgreSQL and worked
 *   off by 1 and 3 sidecars' job managers, claim latency p50/p99 and jobs per minute ({@link ./queue.ts}, run in
 *   a process of its own with loopback network access).
 *
 * `--vs-torch` (whatever `--only` names) also runs each train variant against `../shared/bench/torch_peer.py` in
 * alternating processes and prints the ratios of step time and peak RSS (skipped, saying why, where
 * `/usr/bin/python3` lacks torch).
 *
 * `--model 1b` runs the 1B shape (TinyLlama's: D 2048, I 5632, L 22, H 32, KV 4, V 32000; 3946 MiB float32)
 * instead of the 100M one, and only the parts that finish in reasonable time there: `matmul`, and `memory` on the
 * top quarter of the layers (5 of 22) and all of them, with float32 and bf16 base weights, at 1×256 and 4×256 (each a
 * worker process running three steps: time to the first step, first over steady step, peak RSS); with
 * `--vs-torch`, the peer's all-layer and top-3 steps at 4×256.
 *
 * `--quick` uses a ~4M model, a smaller batch and fewer runs: a smoke test of every part in about a minute.
 * The random model is written to a temporary directory once per run and deleted at the end.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { benchMatmul, MATMUL_SHAPES, type MatmulResult } from "./matmul.ts";
import { LLAMA_100M, LLAMA_1B, LLAMA_QUICK, type LlamaShape, writeRandomLlama } from "./random_llama.ts";
import { type StepVariant, timeStepVariants } from "./train.ts";
import {
  canStartWorkers,
  measureStepMemory,
  measureStepMemoryIsolated,
  type MemoryResult,
} from "./train_memory.ts";
import { benchGenerateDir, benchGenerateHf, type GenerateResult } from "./generate.ts";
import { median } from "./stats.ts";
import { benchVsTorch, torchUnavailable } from "./vs_torch.ts";
import { printReport, type Report, summarize } from "./report.ts";

const PARTS = ["matmul", "train", "memory", "generate", "queue"] as const;
type Part = typeof PARTS[number];

/** Sizes and repetitions of a run. */
interface Profile {
  readonly model: LlamaShape;
  readonly batch: number;
  readonly seq: number;
  readonly matmulRuns: number;
  /** Runs of the [2048,768]@[768,2048] GEMM probe in each train round. */
  readonly probeRuns: number;
  readonly train: { warmup: number; runs: number };
  readonly memory: { warmup: number; runs: number };
  readonly generate: { promptTokens: number; newTokens: number; runs: number };
  /** Alternating flexora / torch peer processes per variant with `--vs-torch`. */
  readonly vsTorchPairs: number;
  /** The peer's name of the model shape (`torch_peer.py --config`). */
  readonly peerConfig: string;
  /** Parts this profile runs at all (the 1B one leaves out those that would take hours). */
  readonly parts: readonly Part[];
  /** The memory part's batch sizes (B of B × seq); default just `batch`. */
  readonly memoryBatches?: readonly number[];
}

const FULL: Profile = {
  model: LLAMA_100M,
  batch: 8,
  seq: 256,
  matmulRuns: 9,
  probeRuns: 15,
  train: { warmup: 2, runs: 5 },
  memory: { warmup: 1, runs: 1 },
  generate: { promptTokens: 16, newTokens: 64, runs: 3 },
  vsTorchPairs: 2,
  peerConfig: "100m",
  parts: PARTS,
};

const ONE_B: Profile = {
  ...FULL,
  model: LLAMA_1B,
  batch: 4,
  memory: { warmup: 1, runs: 2 },
  vsTorchPairs: 1,
  peerConfig: "1b",
  parts: ["matmul", "memory"],
  memoryBatches: [1, 4],
};

const QUICK: Profile = {
  model: LLAMA_QUICK,
  batch: 2,
  seq: 64,
  matmulRuns: 3,
  probeRuns: 3,
  train: { warmup: 1, runs: 3 },
  memory: { warmup: 0, runs: 1 },
  generate: { promptTokens: 16, newTokens: 16, runs: 3 },
  vsTorchPairs: 1,
  peerConfig: "quick",
  parts: PARTS,
};

/** stories260K from the shared models folder, read in place. */
const STORIES = fileURLToPath(new URL("../../shared/models/stories260K", import.meta.url));

function parseParts(only: string | undefined): Set<Part> {
  if (only === undefined) return new Set(PARTS.filter((p) => p !== "queue"));
  const parts = only.split(",").map((p) => p.trim()).filter((p) => p !== "");
  for (const p of parts) {
    if (!(PARTS as readonly string[]).includes(p)) {
      throw new Error(`--only: unknown part '${p}'; choose from ${PARTS.join(", ")}`);
    }
  }
  return new Set(parts as Part[]);
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "boolean" },
    only: { type: "string" },
    quick: { type: "boolean" },
    "vs-torch": { type: "boolean" },
    model: { type: "string", default: "100m" },
  },
});
if (values.model !== "100m" && values.model !== "1b") {
  throw new Error(`--model: choose 100m or 1b, got '${values.model}'`);
}
const profile = values.quick ? QUICK : values.model === "1b" ? ONE_B : FULL;
const parts = new Set([...parseParts(values.only)].filter((p) => profile.parts.includes(p)));
/** Progress goes to stderr, and only without --json. */
const log = (line: string) => {
  if (!values.json) console.error(line);
};

const report: Report = { threads: navigator.hardwareConcurrency, quick: values.quick ?? false };

if (parts.has("queue")) {
  log("queue: 200 jobs through 1 and 3 sidecars on a throwaway PostgreSQL …");
  const allow = ["--allow-read", "--allow-write", "--allow-env", "--allow-run", "--allow-ffi", "--allow-sys"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...allow,
      "--allow-net=127.0.0.1",
      fileURLToPath(new URL("./queue.ts", import.meta.url)),
      "--json",
    ],
    stderr: values.json ? "null" : "inherit",
  }).output();
  if (!out.success) throw new Error(`the queue bench failed (exit ${out.code})`);
  report.queue = JSON.parse(new TextDecoder().decode(out.stdout));
}
if (parts.has("matmul")) {
  // A process's first products run at a third of the rate of later ones (85–105 against 240–340 GFLOP/s in the
  // train part's probes, issue #17): one untimed product per shape first.
  for (const [m, k, n] of MATMUL_SHAPES) await benchMatmul(m, k, n, 1);
  const matmul: MatmulResult[] = [];
  for (const [m, k, n] of MATMUL_SHAPES) matmul.push(await benchMatmul(m, k, n, profile.matmulRuns));
  // The model's projections are the [2048, ·] products; their median rate is the ceiling quoted.
  const projections = matmul.filter((r) => r.m === 2048).map((r) => r.gflops);
  report.matmul = { results: matmul, best: Math.max(...projections), median: median(projections) };
}

const needsModel = parts.has("train") || parts.has("memory") || parts.has("generate") || values["vs-torch"];
const dir = needsModel ? await Deno.makeTempDir({ prefix: "flexora-bench-" }) : undefined;
try {
  if (dir) {
    log(`writing a random model to ${dir} …`);
    const { config, parameters } = await writeRandomLlama(dir, profile.model);
    report.model = {
      parameters,
      weightBytes: parameters * 4,
      config,
      batch: profile.batch,
      seq: profile.seq,
    };
    const L = config.numLayers;
    const all: StepVariant = { name: "all layers", layers: [...Array(L).keys()] };
    const top3: StepVariant = { name: "top 3 layers", layers: [L - 3, L - 2, L - 1] };
    const forward: StepVariant = { name: "forward only", layers: top3.layers, forwardOnly: true };
    const cached: StepVariant = { name: "top 3, prefix cached", layers: top3.layers, prefixCached: true };
    const recompute: StepVariant = { name: "all layers, recompute", layers: all.layers, recompute: true };
    const top3Bf16: StepVariant = { name: "top 3, base bf16", layers: top3.layers, baseDtype: "bf16" };
    const allBf16: StepVariant = { name: "all layers, base bf16", layers: all.layers, baseDtype: "bf16" };
    const quarter = all.layers.slice(L - Math.floor(L / 4)); // 5 of the 1B model's 22, 3 of 12
    const topQuarter: StepVariant = { name: "top quarter", layers: quarter };
    const topQuarterBf16: StepVariant = {
      name: "top quarter, base bf16",
      layers: quarter,
      baseDtype: "bf16",
    };
    const options = { dir, batch: profile.batch, seq: profile.seq };

    if (parts.has("memory")) {
      const isolated = canStartWorkers();
      log(
        `memory: train steps ${isolated ? "in a worker process each" : "in this process (no --allow-run)"} …`,
      );
      const memory: MemoryResult[] = [];
      const variants = profile.memoryBatches
        ? [topQuarter, topQuarterBf16, all, allBf16]
        : [top3, top3Bf16, all, allBf16, recompute];
      for (const batch of profile.memoryBatches ?? [profile.batch]) {
        for (const variant of variants) {
          const o = { ...options, ...profile.memory, batch };
          const v = profile.memoryBatches
            ? { ...variant, name: `${variant.name}, ${batch}×${profile.seq}` }
            : variant;
          memory.push(isolated ? await measureStepMemoryIsolated(o, v) : await measureStepMemory(o, v));
        }
      }
      report.memory = memory;
    }
    if (values["vs-torch"]) {
      const why = await torchUnavailable();
      if (why) log(`vs torch: skipped (${why})`);
      else {
        log(`vs torch: ${profile.vsTorchPairs} alternating flexora / torch_peer.py processes per variant …`);
        const o = { ...options, ...profile.memory, warmup: 1, runs: profile.train.runs };
        const variants = profile.memoryBatches ? [all, top3] : [all, top3, forward];
        report.vsTorch = await benchVsTorch(o, profile.peerConfig, L, variants, profile.vsTorchPairs, log);
      }
    }
    if (parts.has("train")) {
      log(`train: ${profile.train.warmup} warmup and ${profile.train.runs} timed rounds …`);
      // Each round also measures the GEMM ceiling, so that every ratio compares figures taken together.
      const probe = async () => (await benchMatmul(2048, 768, 2048, profile.probeRuns)).gflops;
      const variants = [all, top3, forward, cached, recompute];
      report.train = await timeStepVariants({ ...options, ...profile.train }, variants, probe);
    }
    if (parts.has("generate")) {
      log("generate …");
      const generate: GenerateResult[] = [];
      try {
        generate.push(await benchGenerateHf(STORIES, "stories260K", profile.generate));
      } catch (e) {
        log(`generate: skipping stories260K (${(e as Error).message})`);
      }
      generate.push(await benchGenerateDir(dir, "random model", profile.generate));
      report.generate = generate;
    }
  }
} finally {
  if (dir) await Deno.remove(dir, { recursive: true });
}

report.summary = summarize(report);
if (values.json) console.log(JSON.stringify(report));
else printReport(report);

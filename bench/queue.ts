/**
 * The shared queue on PostgreSQL (`deno task bench --only queue`, which runs this file in a process of its own
 * with loopback network access): 200 jobs queued on the tiny fixture model, then worked off by 1 and by 3 sidecars'
 * job managers, each on its own connection pool to one throwaway PostgreSQL (tests/serve/pg.ts). The runner is
 * replaced by an in-process one that reports a start, a few progress points and its result at once (the tests'
 * fake runner, speaking the real protocol), so the figures are the queue's own: the claim statement's latency
 * (p50, p99) and jobs finished per minute, each job's whole life in the store included (claim, state changes,
 * history points, heartbeats). Rounds alternate 1 and 3 sidecars; medians over `--rounds` (default 3).
 *
 * Usage: `deno run --allow-read --allow-write --allow-env --allow-run --allow-net=127.0.0.1 --allow-ffi
 * --allow-sys bench/queue.ts [--jobs 200] [--rounds 3] [--json]`
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { JobManager } from "../src/serve/jobs.ts";
import { PostgresStore } from "../src/serve/store/postgres.ts";
import type { Store } from "../src/serve/store/mod.ts";
import { fakeSpawn } from "../tests/serve/helpers.ts";
import { PG_MISSING, TestPostgres } from "../tests/serve/pg.ts";
import { median } from "./stats.ts";

/** One round's figures. */
export interface QueueRound {
  readonly sidecars: number;
  readonly jobs: number;
  readonly claimP50Ms: number;
  readonly claimP99Ms: number;
  readonly jobsPerMinute: number;
}

/** The medians per sidecar count, and every round. */
export interface QueueResult {
  readonly bySidecars: { sidecars: number; claimP50Ms: number; claimP99Ms: number; jobsPerMinute: number }[];
  readonly rounds: QueueRound[];
}

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

/**
 * A store whose successful claims are timed into `latencies` (a Proxy: the store's methods run on the store
 * itself, so its private state stays reachable).
 */
function timedClaims(store: Store, latencies: number[]): Store {
  return new Proxy(store, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (key !== "claim") return typeof value === "function" ? value.bind(target) : value;
      return async (...args: Parameters<Store["claim"]>) => {
        const started = performance.now();
        const job = await target.claim(...args);
        if (job) latencies.push(performance.now() - started);
        return job;
      };
    },
  });
}

/** One round: `jobs` queued, then `sidecars` managers work them off; the claim latencies and the rate. */
async function round(pg: TestPostgres, sidecars: number, jobs: number, index: number): Promise<QueueRound> {
  const url = await pg.database(`queue_${index}`);
  const dir = await Deno.makeTempDir({ prefix: "flexora-bench-queue-" });
  const seed = await PostgresStore.open(url);
  const request = {
    model: join(ROOT, "fixtures/tiny-llama"),
    data: join(ROOT, "fixtures/tiny-data"),
    name: "queued",
    options: {},
    device: "cpu",
  };
  for (let i = 0; i < jobs; i++) await seed.create(crypto.randomUUID(), request);
  const latencies: number[] = [];
  const stores = await Promise.all(Array.from({ length: sidecars }, () => PostgresStore.open(url)));
  const managers = stores.map((store, i) =>
    new JobManager({
      store: timedClaims(store, latencies),
      dataDir: join(dir, `host-${i}`),
      servers: [],
      attach: () => Promise.reject(new Error("no attach in this bench")),
      maxQueued: jobs,
      spawn: fakeSpawn(),
      owner: `bench-${i}`,
      heartbeatMs: 1000,
    })
  );
  const started = performance.now();
  await Promise.all(managers.map((m) => m.start()));
  for (;;) {
    const counts = await seed.counts();
    if ((counts.succeeded ?? 0) + (counts.failed ?? 0) >= jobs) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const seconds = (performance.now() - started) / 1000;
  const failed = (await seed.counts()).failed ?? 0;
  await Promise.all(managers.map((m) => m.close()));
  await Promise.all([...stores, seed].map((s) => s.close()));
  await Deno.remove(dir, { recursive: true });
  if (failed > 0) throw new Error(`${failed} of ${jobs} jobs failed`);
  return {
    sidecars,
    jobs,
    claimP50Ms: quantile(latencies, 0.5),
    claimP99Ms: quantile(latencies, 0.99),
    jobsPerMinute: jobs / seconds * 60,
  };
}

/** Alternating rounds of 1 and 3 sidecars on one throwaway PostgreSQL. */
export async function benchQueue(
  options: { jobs: number; rounds: number },
  log: (line: string) => void,
): Promise<QueueResult> {
  if (PG_MISSING) throw new Error(PG_MISSING);
  const pg = await TestPostgres.start();
  const rounds: QueueRound[] = [];
  try {
    for (let r = 0; r < options.rounds; r++) {
      for (const sidecars of [1, 3]) {
        log(`queue: round ${r + 1}, ${options.jobs} jobs, ${sidecars} sidecar(s) …`);
        rounds.push(await round(pg, sidecars, options.jobs, rounds.length));
      }
    }
  } finally {
    await pg.close();
  }
  const bySidecars = [1, 3].map((sidecars) => {
    const mine = rounds.filter((r) => r.sidecars === sidecars);
    return {
      sidecars,
      claimP50Ms: median(mine.map((r) => r.claimP50Ms)),
      claimP99Ms: median(mine.map((r) => r.claimP99Ms)),
      jobsPerMinute: median(mine.map((r) => r.jobsPerMinute)),
    };
  });
  return { bySidecars, rounds };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { jobs: { type: "string" }, rounds: { type: "string" }, json: { type: "boolean" } },
  });
  const result = await benchQueue(
    { jobs: Number(values.jobs ?? 200), rounds: Number(values.rounds ?? 3) },
    (line) => console.error(line),
  );
  console.log(JSON.stringify(result, null, values.json ? undefined : 2));
}

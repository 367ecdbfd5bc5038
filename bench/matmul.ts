/**
 * ORT MatMul throughput on this machine: the ceiling the training benchmarks are held against.
 * The weight is a graph initializer, not pre-packed, as the model's weights are (`createSession`'s default), the
 * activation an input.
 *
 * @module
 */

import { matmul } from "../src/graph/build.ts";
import { Graph } from "../src/graph/graph.ts";
import { serialize } from "../src/graph/serialize.ts";
import { createSession, hostTensor } from "../src/runtime/session.ts";
import { Rng } from "../src/util/random.ts";
import { timeIt } from "./stats.ts";

/** One measured product [M, K] @ [K, N]. */
export interface MatmulResult {
  m: number;
  k: number;
  n: number;
  seconds: number;
  gflops: number;
}

/** Measures float32 [M, K] @ [K, N] with the weight as an initializer; median of `runs`. */
export async function benchMatmul(m: number, k: number, n: number, runs = 9): Promise<MatmulResult> {
  const g = new Graph();
  const rng = new Rng(1);
  const x = g.input("x", "float32", [m, k]);
  const w = g.initializer("w", [k, n], Float32Array.from({ length: k * n }, () => rng.uniform(-1, 1)));
  const session = await createSession(serialize(g, { y: matmul(x, w) }));
  const feeds = {
    x: hostTensor("float32", [m, k], Float32Array.from({ length: m * k }, () => rng.uniform(-1, 1))),
  };
  const { median } = await timeIt(() => session.run(feeds), runs);
  await session.release();
  return { m, k, n, seconds: median, gflops: (2 * m * k * n) / median / 1e9 };
}

/** The shapes of the 100M-parameter benchmark model's projections (B·T = 2048 tokens). */
export const MATMUL_SHAPES: readonly [number, number, number][] = [
  [2048, 768, 768],
  [2048, 768, 2048],
  [2048, 2048, 768],
  [1024, 1024, 1024],
];

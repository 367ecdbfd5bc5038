/**
 * `deno task bench`: runs the benchmarks and prints medians (`--json` for machine-readable output).
 * Results and the commands that produced them are kept in BENCHMARKS.md.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { benchMatmul, MATMUL_SHAPES } from "./matmul.ts";

const { values } = parseArgs({ args: Deno.args, options: { json: { type: "boolean" } } });
const results = [];
for (const [m, k, n] of MATMUL_SHAPES) {
  const r = await benchMatmul(m, k, n);
  results.push(r);
  if (!values.json) {
    console.log(
      `matmul [${m},${k}]@[${k},${n}] float32: ${(r.seconds * 1e3).toFixed(2)} ms, ${
        r.gflops.toFixed(1)
      } GFLOP/s`,
    );
  }
}
const best = Math.max(...results.map((r) => r.gflops));
if (values.json) {
  console.log(JSON.stringify({ threads: navigator.hardwareConcurrency, matmul: results, best }));
} else {console.log(
    `best MatMul rate: ${best.toFixed(1)} GFLOP/s on ${navigator.hardwareConcurrency} threads`,
  );}

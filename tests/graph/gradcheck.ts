/**
 * Checks gradients built by the autodiff driver against central finite differences, in float64, through
 * onnxruntime-node itself.
 *
 * The loss is L = Σ (y²/2 + 0.3·y) over every float output y, so dL/dy = y + 0.3 differs from element to element
 * and a transposed or misplaced gradient shows.
 *
 * @module
 */

import assert from "node:assert/strict";
import { add, mul, reduceSum } from "../../src/graph/build.ts";
import { gradients } from "../../src/graph/autodiff.ts";
import { isFloat } from "../../src/graph/dtype.ts";
import { Graph, type Value } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import type { Dim } from "../../src/graph/shape.ts";
import { createSession, type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { Rng } from "../../src/util/random.ts";

/** One input of the function under test. */
export interface InputSpec {
  /** Static shape; strings are symbolic dims, bound by `bind`. */
  shape: Dim[];
  /** Default float64 (differentiated); int64 and bool inputs are not. */
  dtype?: "float64" | "int64" | "bool";
  /** Fixed values (else random: floats in `range`, int64 in [0, `range[1]`), bools fair coins). */
  values?: number[];
  /** Range of random float values (default [-1, 1]). */
  range?: [number, number];
  /** Do not differentiate with respect to this float input. */
  frozen?: boolean;
}

/** Options of {@link checkGradients}. */
export interface CheckOptions {
  /** Values of symbolic dims. */
  bind?: Record<string, number>;
  /** Largest accepted ‖analytic − numeric‖∞ / ‖numeric‖∞ (default 1e-6). */
  tolerance?: number;
  /** Seed of the random inputs. */
  seed?: number;
}

const STEP = 1e-5;

/** A shape of `rank` random dims in [lo, hi], from a seeded generator. */
export function randomShape(rng: Rng, rank: number, lo = 2, hi = 4): number[] {
  return Array.from({ length: rank }, () => rng.int(lo, hi));
}

/**
 * Builds `f` over graph inputs shaped as `specs`, differentiates L = Σ (y²/2 + 0.3·y) with respect to every
 * float input that is not frozen, and asserts that each gradient matches central finite differences.
 */
export async function checkGradients(
  f: (...inputs: Value[]) => Value | Value[],
  specs: InputSpec[],
  options: CheckOptions = {},
): Promise<void> {
  const rng = new Rng(options.seed ?? 1234);
  const g = new Graph({ float: "float64", name: "gradcheck" });
  const inputs = specs.map((s, i) => g.input(`x${i}`, s.dtype ?? "float64", s.shape));
  const outs = [f(...inputs)].flat().filter((y) => isFloat(y.dtype));
  assert.ok(outs.length > 0, "the function under test has no float output");
  const terms = outs.map((y) => reduceSum(add(mul(mul(y, y), 0.5), mul(y, 0.3)), y.shape.map((_, i) => i)));
  const loss = terms.reduce((a, b) => add(a, b));
  const diff = inputs.filter((v, i) => v.dtype === "float64" && !specs[i].frozen);
  const grads = gradients(loss, diff);
  const outputs: Record<string, Value> = { loss };
  grads.forEach((d, i) => (outputs[`grad_${diff[i].name}`] = d));
  const session = await createSession(serialize(g, outputs), { threads: 1, optimization: "basic" });

  const feeds: Record<string, HostTensor> = {};
  specs.forEach((s, i) => {
    const dims = s.shape.map((
      d,
    ) => (typeof d === "number" ? d : options.bind?.[d] ?? fail(`unbound dim '${d}'`)));
    const n = dims.reduce((a, b) => a * b, 1);
    const [lo, hi] = s.range ?? [-1, 1];
    const dtype = s.dtype ?? "float64";
    const values = s.values ??
      Array.from(
        { length: n },
        () =>
          dtype === "float64" ? rng.uniform(lo, hi) : dtype === "int64" ? rng.int(0, hi - 1) : rng.int(0, 1),
      );
    feeds[`x${i}`] = hostTensor(dtype, dims, values);
  });

  try {
    const analytic = await session.run(feeds);
    const lossAt = async () => (await session.run(feeds, ["loss"])).loss.data[0] as number;
    for (const v of diff) {
      const data = feeds[v.name].data as Float64Array;
      const numeric = new Float64Array(data.length);
      for (let k = 0; k < data.length; k++) {
        const x0 = data[k];
        data[k] = x0 + STEP;
        const up = await lossAt();
        data[k] = x0 - STEP;
        const down = await lossAt();
        data[k] = x0;
        numeric[k] = (up - down) / (2 * STEP);
      }
      const got = analytic[`grad_${v.name}`].data as Float64Array;
      let err = 0, scale = 0;
      for (let k = 0; k < numeric.length; k++) {
        err = Math.max(err, Math.abs(got[k] - numeric[k]));
        scale = Math.max(scale, Math.abs(numeric[k]));
      }
      assert.ok(scale > 1e-6, `gradient of ${v.name} is zero everywhere: the check would prove nothing`);
      const rel = err / scale;
      assert.ok(
        rel <= (options.tolerance ?? 1e-6),
        `gradient of ${v.name} ${JSON.stringify(v.shape)}: relative error ${rel.toExponential(2)}\n` +
          `analytic ${Array.from(got).slice(0, 8)}\nnumeric  ${Array.from(numeric).slice(0, 8)}`,
      );
    }
  } finally {
    await session.release();
  }
}

function fail(message: string): never {
  throw new Error(message);
}

import assert from "node:assert/strict";
import { matmul, reduceSum } from "../../src/graph/build.ts";
import { Graph } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import {
  CPU_PROVIDER,
  deviceMatmulShare,
  formatPlacement,
  type Placement,
} from "../../src/runtime/placement.ts";
import { createSession, hostTensor } from "../../src/runtime/session.ts";

/** y = sum(x·w): one MatMul of 2·2·3·4 FLOPs and a reduction. */
function model(): Uint8Array {
  const g = new Graph({ name: "mm" });
  const y = reduceSum(matmul(g.input("x", "float32", [2, 3]), g.input("w", "float32", [3, 4])), [0, 1]);
  return serialize(g, { y });
}
const feeds = {
  x: hostTensor("float32", [2, 3], [1, 2, 3, 4, 5, 6]),
  w: hostTensor("float32", [3, 4], Array.from({ length: 12 }, (_, i) => i / 10)),
};

/** The same sum computed here. */
function reference(): number {
  let y = 0;
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 4; j++) {
      for (let k = 0; k < 3; k++) {
        y += (feeds.x.data[i * 3 + k] as number) * (feeds.w.data[k * 4 + j] as number);
      }
    }
  }
  return y;
}

async function placementOf(providers: string[]): Promise<{ placement: Placement; y: number }> {
  const reports: Placement[] = [];
  const session = await createSession(model(), {
    providers,
    name: "mm",
    onPlacement: (p) => reports.push(p),
  });
  const { y } = await session.run(feeds);
  await session.run(feeds); // reported once, after the first run
  await session.release();
  assert.equal(reports.length, 1);
  return { placement: reports[0], y: y.data[0] as number };
}

Deno.test("a session reports where its nodes ran after its first run (CPU)", async () => {
  const { placement, y } = await placementOf(["cpu"]);
  assert.equal(placement.graph, "mm");
  assert.deepEqual(Object.keys(placement.nodes), [CPU_PROVIDER]);
  assert.equal(placement.matmulFlops[CPU_PROVIDER], 2 * 2 * 4 * 3);
  assert.equal(deviceMatmulShare(placement), 0);
  assert.match(formatPlacement(placement), /^placement mm: \d+ nodes on CPUExecutionProvider$/);
  assert.ok(Math.abs(y - reference()) < 1e-4, `y = ${y}, expected ${reference()}`);
});

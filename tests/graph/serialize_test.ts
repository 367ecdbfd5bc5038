import assert from "node:assert/strict";
import { join } from "node:path";
import onnxProto from "onnx-proto";
import { add, exp, matmul, mul, reduceSum } from "../../src/graph/build.ts";
import { Graph } from "../../src/graph/graph.ts";
import { MODEL_FORMAT_VERSION, serialize } from "../../src/graph/serialize.ts";
import { createSession, hostTensor } from "../../src/runtime/session.ts";

const X = [1, 2, 3, -1, 0.5, 4];
const W = [0.5, -1, 2, 0, 1, 3];
const BIAS = [0.25, -0.75];
// y = x @ W + b for x [2,3], W [3,2], computed by hand-free loops.
const expected = [0, 1].flatMap((i) =>
  [0, 1].map((j) => BIAS[j] + [0, 1, 2].reduce((s, k) => s + X[i * 3 + k] * W[k * 2 + j], 0))
);

function linear(float: "float32" | "float64", weights: "inline" | "external") {
  const g = new Graph({ float });
  const x = g.input("x", float, ["B", 3]);
  const w = weights === "inline" ? g.initializer("w", [3, 2], W) : g.initializer("w", [3, 2], {
    location: "weights.bin",
    offset: 8,
    length: 6 * (float === "float32" ? 4 : 8),
  });
  const b = g.initializer("b", [2], BIAS);
  return { g, y: add(matmul(x, w), b) };
}

function weightsFile(float: "float32" | "float64"): Uint8Array {
  const data = float === "float32" ? new Float32Array(W) : new Float64Array(W);
  const bytes = new Uint8Array(8 + data.byteLength);
  bytes.set(new Uint8Array(data.buffer), 8); // 8 bytes of header before the tensor, like safetensors
  return bytes;
}

async function runLinear(
  model: Uint8Array | string,
  float: "float32" | "float64",
  external?: Record<string, Uint8Array>,
) {
  const session = await createSession(model, { externalData: external });
  const out = await session.run({ x: hostTensor(float, [2, 3], X) });
  await session.release();
  return out.y;
}

for (const float of ["float32", "float64"] as const) {
  Deno.test(`round trip with inline initializers (${float})`, async () => {
    const { g, y } = linear(float, "inline");
    const out = await runLinear(serialize(g, { y }), float);
    assert.equal(out.dtype, float);
    assert.deepEqual(out.dims, [2, 2]);
    Array.from(out.data as Float64Array).forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6));
  });

  Deno.test(`round trip with external data in a file beside the model (${float})`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(join(dir, "weights.bin"), weightsFile(float));
      const { g, y } = linear(float, "external");
      const bytes = serialize(g, { y });
      assert.ok(
        bytes.length < 400,
        `external weights must not be copied into the model (${bytes.length} bytes)`,
      );
      await Deno.writeFile(join(dir, "model.onnx"), bytes);
      const out = await runLinear(join(dir, "model.onnx"), float);
      Array.from(out.data as Float64Array).forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`round trip with external data given in memory (${float})`, async () => {
    const { g, y } = linear(float, "external");
    const out = await runLinear(serialize(g, { y }), float, { "weights.bin": weightsFile(float) });
    Array.from(out.data as Float64Array).forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6));
  });
}

Deno.test("the same builder code emits float32 and float64 graphs that agree", async () => {
  const results = [];
  for (const float of ["float32", "float64"] as const) {
    const g = new Graph({ float });
    const x = g.input("x", float, [4]);
    const y = reduceSum(mul(exp(x), 0.5), [0]);
    const s = await createSession(serialize(g, { y }));
    const out = await s.run({ x: hostTensor(float, [4], [0.1, -0.2, 0.3, 1.5]) });
    assert.equal(out.y.dtype, float);
    results.push(out.y.data[0] as number);
  }
  assert.ok(Math.abs(results[0] - results[1]) < 1e-6 * Math.abs(results[1]));
});

Deno.test("serialization keeps only what the outputs need, renames outputs, and records the format version", () => {
  const g = new Graph();
  const x = g.input("x", "float32", [2]);
  const used = add(x, 1);
  mul(exp(x), g.initializer("unused", [2], [1, 2])); // dead: not needed by any output
  const model = onnxProto.onnx.ModelProto.decode(serialize(g, { result: used }));
  assert.deepEqual(model.graph!.node!.map((n) => n.opType), ["Add", "Identity"]);
  assert.deepEqual(model.graph!.output!.map((o) => o.name), ["result"]);
  assert.ok(!model.graph!.initializer!.some((t) => t.name === "unused"));
  const meta = Object.fromEntries(model.metadataProps!.map((p) => [p.key, p.value]));
  assert.equal(meta["flexora.format_version"], MODEL_FORMAT_VERSION);
  assert.equal(Number(model.graph!.input![0].type!.tensorType!.shape!.dim![0].dimValue), 2);
});

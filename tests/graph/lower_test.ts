/**
 * Ops some execution providers lack are written as primitive ONNX ops (src/graph/lower.ts): the serialized model
 * holds none of them, and the values are what the ops define, checked against loops here (float64, CPU).
 */

import assert from "node:assert/strict";
import onnxProto from "onnx-proto";
import { logSoftmax, softmaxCrossEntropy, sum } from "../../src/graph/build.ts";
import { Graph } from "../../src/graph/graph.ts";
import { LOWERED_OPS } from "../../src/graph/lower.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { createSession, hostTensor } from "../../src/runtime/session.ts";

const N = 3, C = 4;
const S = [0.5, -1, 2, 0.25, 3, 1, -2, 0, -0.5, 0.75, 1.5, -3];
const LABELS = [2, -100, 1]; // the second is ignored

/** log-softmax of row i of S, computed here. */
function logProbRow(i: number): number[] {
  const row = S.slice(i * C, i * C + C);
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
  return row.map((x) => x - lse);
}

Deno.test("Sum, LogSoftmax and SoftmaxCrossEntropyLoss are written as primitive ops and compute the same", async () => {
  const g = new Graph({ float: "float64" });
  const s = g.input("s", "float64", [N, C]);
  const labels = g.input("labels", "int64", [N]);
  const mean = softmaxCrossEntropy(s, labels, { reduction: "mean" });
  const outputs = {
    total: sum(s, s, s),
    logProb: logSoftmax(s),
    mean: mean.loss,
    ceLogProb: mean.logProb,
    sum: softmaxCrossEntropy(s, labels, { reduction: "sum" }).loss,
    none: softmaxCrossEntropy(s, labels, { reduction: "none" }).loss,
  };
  const bytes = serialize(g, outputs);
  const ops = new Set(onnxProto.onnx.ModelProto.decode(bytes).graph!.node!.map((n) => n.opType!));
  for (const op of LOWERED_OPS) assert.ok(!ops.has(op), `${op} is still in the model`);

  const session = await createSession(bytes, { optimization: "basic" });
  const out = await session.run({
    s: hostTensor("float64", [N, C], S),
    labels: hostTensor("int64", [N], LABELS),
  });
  await session.release();
  const logProb = [0, 1, 2].flatMap(logProbRow);
  const rowLoss = LABELS.map((l, i) => (l === -100 ? 0 : -logProbRow(i)[l]));
  const close = (actual: ArrayLike<number | bigint>, expected: number[], what: string) =>
    expected.forEach((e, i) => assert.ok(Math.abs(Number(actual[i]) - e) < 1e-12, `${what}[${i}]`));
  close(out.total.data, S.map((x) => 3 * x), "sum");
  close(out.logProb.data, logProb, "logSoftmax");
  close(out.ceLogProb.data, logProb, "cross-entropy log-probabilities");
  close(out.none.data, rowLoss, "row losses");
  close(out.sum.data, [rowLoss[0] + rowLoss[2]], "summed loss");
  close(out.mean.data, [(rowLoss[0] + rowLoss[2]) / 2], "mean loss over the labels not ignored");
});

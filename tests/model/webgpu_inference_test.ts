/**
 * Inference on the parity device against the CPU: per-token log-probabilities (the scoring graph), greedy
 * generation with the KV cache, and the CLI's device and placement log. Shared setup: ./webgpu_shared.ts.
 */

import assert from "node:assert/strict";
import { batchFeeds } from "../../src/data/sequence.ts";
import { generate } from "../../src/model/generate.ts";
import { buildScoringGraph, buildStepGraph } from "../../src/model/graphs.ts";
import type { HostTensor } from "../../src/runtime/session.ts";
import { flexora } from "../cli/run.ts";
import { STORIES } from "./shared.ts";
import { assertClose, assertOnDevice, models, PARITY_DEVICE, TINY, webgpuTest } from "./webgpu_shared.ts";

for (const [label, dir] of [["tiny fixture", TINY], ["stories260K", STORIES]]) {
  webgpuTest(`${label}: per-token log-probabilities match the CPU's`, async () => {
    const { cpu, gpu, placements } = await models(dir);
    const ids = Array.from({ length: 12 }, (_, i) => (7 * i + 3) % cpu.config.vocabSize);
    const b = batchFeeds([{ ids }, { ids: ids.slice(0, 7) }]);
    const feeds = { ...b, targets: b.labels };
    delete (feeds as Record<string, HostTensor>).labels;
    const results = [];
    for (const model of [cpu, gpu]) {
      const session = await model.session(buildScoringGraph(model.config, model.weights));
      results.push(await session.run(feeds));
      await session.release();
    }
    assertClose(results[1], results[0], ["token_logprobs"]);
    assertOnDevice(placements, 1);
  });
}

webgpuTest("stories260K: greedy generation with the KV cache gives the CPU's ids", async () => {
  const { cpu, gpu, placements } = await models(STORIES);
  const ids = [];
  for (const model of [cpu, gpu]) {
    const session = await model.session(buildStepGraph(model.config, model.weights));
    ids.push(await generate(session, model.config, [1, 403, 407], { maxTokens: 24, greedy: true }));
    await session.release();
  }
  assert.deepEqual(ids[1], ids[0]);
  assertOnDevice(placements, 1);
});

webgpuTest("the CLI logs the device and each session's placement; its greedy ids are the CPU's", async () => {
  const args = ["generate", "--model", STORIES, "--prompt-ids", "1", "--max-tokens", "8", "--json"];
  const [cpu, gpu] = [
    await flexora(...args, "--device", "cpu"),
    await flexora(...args, "--device", PARITY_DEVICE),
  ];
  assert.equal(gpu.code, 0, gpu.err);
  assert.match(gpu.err, new RegExp(`^device: ${PARITY_DEVICE}$`, "m"));
  assert.match(
    gpu.err,
    /^placement step: \d+ nodes on \w+ExecutionProvider.*MatMul FLOPs 100\.0% on the device/m,
  );
  assert.doesNotMatch(cpu.err, /placement/);
  const ids = JSON.parse(cpu.out).ids;
  assert.equal(ids.length, 8);
  assert.deepEqual(JSON.parse(gpu.out).ids, ids);
});

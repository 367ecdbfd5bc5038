/**
 * What the parity suite's files share (tests/model/webgpu_*_test.ts): every graph on onnxruntime's WebGPU provider
 * (or CUDA's, with FLEXORA_PARITY_DEVICE=cuda) against the CPU provider. Float32 losses and gradients agree within
 * 1e-4 (relative, over each tensor), greedy ids are equal, and at least 99 % of each graph's MatMul FLOPs run on
 * the device. On a machine without a GPU the provider runs on Mesa's lavapipe (tools/lavapipe.sh); without an
 * adapter the tests are skipped, saying why.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadDataset } from "../../src/data/dataset.ts";
import { tokenizeExamples } from "../../src/data/mod.ts";
import type { Sequence } from "../../src/data/sequence.ts";
import { initLora, type LoraConfig, validateLora } from "../../src/model/lora.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { TARGET_MODULES } from "../../src/model/names.ts";
import {
  CPU_PROVIDER,
  deviceMatmulShare,
  formatPlacement,
  type Placement,
} from "../../src/runtime/placement.ts";
import { type HostTensor, hostTensor } from "../../src/runtime/session.ts";
import { NO_PARITY_DEVICE, PARITY_DEVICE } from "../runtime/webgpu.ts";
import { ROOT } from "./shared.ts";

export { PARITY_DEVICE };

export const TINY = join(ROOT, "fixtures/tiny-llama");
export const TOLERANCE = 1e-4;
export const TARGETS = TARGET_MODULES;

/**
 * A test on the parity device (WebGPU unless FLEXORA_PARITY_DEVICE=cuda): skipped, with the reason printed once
 * by ../runtime/webgpu.ts, when the device is unavailable (for WebGPU: no adapter).
 */
export function webgpuTest(name: string, fn: () => Promise<void>, only?: "webgpu"): void {
  const ignore = NO_PARITY_DEVICE !== null || (only !== undefined && only !== PARITY_DEVICE);
  Deno.test({ name: `${PARITY_DEVICE}: ${name}`, ignore, fn: () => oneAtATime(fn) });
}

/**
 * Runs `fn` holding an exclusive lock on this file, so the parity tests run one after another: the WebGPU context
 * is shared by all sessions in a process, and two sessions profiling at once would mix their kernel events.
 * `deno test --parallel` runs test files at once in one process (a worker each), and a `flock` lock belongs to
 * one opening of the file, so it also keeps apart the workers of one process.
 */
async function oneAtATime(fn: () => Promise<void>): Promise<void> {
  const file = await Deno.open(fileURLToPath(import.meta.url), { read: true });
  try {
    await file.lock(true);
    await fn();
  } finally {
    file.close(); // closing releases the lock
  }
}

/** The same model on the CPU and on WebGPU; the WebGPU one records every session's placement. */
export async function models(dir: string, dtype: "float32" | "float16" = "float32") {
  const placements: Placement[] = [];
  const cpu = await loadModel(dir, { dtype });
  const gpu = await loadModel(dir, {
    dtype,
    providers: [PARITY_DEVICE, "cpu"],
    onPlacement: (p) => placements.push(p),
  });
  return { cpu, gpu, placements };
}

/** Every session placed at least 99 % of its MatMul FLOPs on the device. */
export function assertOnDevice(placements: readonly Placement[], sessions: number): void {
  assert.equal(placements.length, sessions, "one placement report per session");
  for (const p of placements) {
    assert.ok(deviceMatmulShare(p) >= 0.99, formatPlacement(p));
    assert.ok(Object.keys(p.nodes).some((k) => k !== CPU_PROVIDER), `${p.graph} ran nothing on the device`);
  }
}

/** ‖a − b‖ / ‖b‖ over a tensor (b the CPU's), or |a − b| when b is all zeros. */
export function relativeError(a: HostTensor, b: HostTensor): number {
  assert.deepEqual(a.dims, b.dims);
  let diff = 0, norm = 0;
  for (let i = 0; i < b.data.length; i++) {
    const [x, y] = [Number(a.data[i]), Number(b.data[i])];
    diff += (x - y) ** 2;
    norm += y * y;
  }
  return norm === 0 ? Math.sqrt(diff) : Math.sqrt(diff / norm);
}

/** Each named tensor of `gpu` within `tolerance` of the CPU's. */
export function assertClose(
  gpu: Readonly<Record<string, HostTensor>>,
  cpu: Readonly<Record<string, HostTensor>>,
  names: readonly string[],
  tolerance = TOLERANCE,
): void {
  assert.ok(names.length > 0);
  for (const name of names) {
    const e = relativeError(gpu[name], cpu[name]);
    assert.ok(e <= tolerance, `${name}: relative error ${e.toExponential(2)} > ${tolerance}`);
  }
}

export const scalar = (x: number) => hostTensor("float32", [], [x]);

/**
 * Optimizer state after a few steps: parameters and both moments within 1e-4. (Adam divides each element's step by
 * its own gradient's size, so this holds only with a bias correction 1 − βᵗ that is exact on both providers:
 * with `1 − pow(β, t)`, WGSL's `pow` put the first update 5e-5 off, the parameters needed 1e-2 here and the
 * second moments 2e-4; see `oneMinusPower` in src/train/optim.ts.)
 */
export function assertStateClose(gpu: Record<string, HostTensor>, cpu: Record<string, HostTensor>): void {
  assertClose(gpu, cpu, Object.keys(cpu));
}

export async function sequences(model: Model, n: number): Promise<readonly Sequence[]> {
  const data = await loadDataset(join(ROOT, "fixtures/tiny-data"));
  return tokenizeExamples(data.train.slice(0, n), model.tokenizer, { maxLength: 48 }).sequences;
}

/**
 * LoRA weights at a generic point: `initLora`'s A, and B nonzero too (at B = 0, PEFT's start, A and the gates get
 * no direct gradient, and the gate gradient is a small difference of large terms).
 */
export function loraAt(model: Model, lora: LoraConfig, seed: number): Record<string, HostTensor> {
  const params = initLora(model.config, lora, seed);
  for (const [name, t] of Object.entries(params)) {
    if (!name.includes("lora_B")) continue;
    params[name] = hostTensor(
      "float32",
      t.dims,
      Array.from({ length: t.data.length }, (_, i) => Math.sin(i) * 0.05),
    );
  }
  return params;
}

export function allLayers(model: Model, targets: readonly string[] = TARGETS): LoraConfig {
  return validateLora(model.config, {
    rank: 4,
    alpha: 8,
    rslora: false,
    targets: targets as LoraConfig["targets"],
    layers: [...Array(model.config.numLayers).keys()],
  });
}

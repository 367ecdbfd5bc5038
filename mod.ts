/**
 * flexora: Flexora (automatic layer selection for LoRA) on onnxruntime, and adapters hot-loaded into running
 * inference servers.
 *
 * This entry point exports the ONNX graph builder, reverse-mode autodiff, in-graph optimizers, learning-rate
 * schedules, the onnxruntime session wrapper, and the model engine (Hugging Face checkpoints, the Llama-family
 * decoder with gated LoRA, generation and scoring). The Flexora pipeline and the sidecar build on them.
 *
 * @example
 * ```ts
 * import { buildTrainStep, createSession, Graph, hostTensor, matmul, mul, reduceMean, serialize, sgd, sub, TrainLoop } from "./mod.ts";
 * const g = new Graph();
 * const x = g.input("x", "float32", ["N", 1]);
 * const y = g.input("y", "float32", ["N", 1]);
 * const w = g.input("w", "float32", [1, 1]);
 * const err = sub(matmul(x, w), y);
 * const step = buildTrainStep(reduceMean(mul(err, err), [0, 1]), [w], sgd());
 * const loop = new TrainLoop(await createSession(serialize(g, step.outputs)), step, { w: hostTensor("float32", [1, 1], [0]) });
 * const { loss } = await loop.step({ x: hostTensor("float32", [1, 1], [1]), y: hostTensor("float32", [1, 1], [2]) }, 0.1);
 * if (loss !== 4) throw new Error(`first loss should be 4, got ${loss}`);
 * ```
 *
 * @module
 */

export * from "./src/graph/mod.ts";
export * from "./src/train/mod.ts";
export * from "./src/model/mod.ts";
export * from "./src/data/mod.ts";
export * from "./src/flexora/mod.ts";
export {
  exportAdapterGguf,
  exportModelGguf,
  type GgufDType,
  type GgufExport,
  type GgufTensor,
  writeGguf,
} from "./src/export/gguf/mod.ts";
export { type Device, DeviceError, DEVICES, resolveDevice } from "./src/runtime/device.ts";
export {
  createSession,
  type HostTensor,
  hostTensor,
  Session,
  type SessionOptions,
} from "./src/runtime/session.ts";
export { Rng } from "./src/util/random.ts";

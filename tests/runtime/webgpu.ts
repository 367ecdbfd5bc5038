/**
 * Whether the WebGPU tests can run here: onnxruntime-node's WebGPU provider needs a Vulkan driver Dawn accepts.
 * On a machine without a GPU that is Mesa's lavapipe from `tools/lavapipe.sh`, whose `.lavapipe/` folder this
 * module points the Vulkan loader at when `VK_ICD_FILENAMES` is unset (before any WebGPU session opens).
 *
 * The parity suite (tests/model/webgpu_*_test.ts) runs on {@link PARITY_DEVICE}: WebGPU, or CUDA with
 * `FLEXORA_PARITY_DEVICE=cuda` (what bench/gpu.sh does on a machine with the CUDA provider).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { resolveDevice } from "../../src/runtime/device.ts";

const manifest = fileURLToPath(new URL("../../.lavapipe/lvp_icd.json", import.meta.url));
if (!Deno.env.get("VK_ICD_FILENAMES") && !Deno.env.get("VK_DRIVER_FILES") && existsSync(manifest)) {
  Deno.env.set("VK_ICD_FILENAMES", manifest);
}

/** Null when the WebGPU provider works here, else why not (printed once, and the tests are skipped). */
export const NO_WEBGPU: string | null = await resolveDevice("webgpu").then(
  () => null,
  (e: Error) => e.message,
);
if (NO_WEBGPU) console.log(`WebGPU tests skipped: ${NO_WEBGPU}`);

/** The device the parity suite compares with the CPU: `FLEXORA_PARITY_DEVICE` (webgpu or cuda; default webgpu). */
export const PARITY_DEVICE: "webgpu" | "cuda" = (() => {
  const d = Deno.env.get("FLEXORA_PARITY_DEVICE") ?? "webgpu";
  if (d !== "webgpu" && d !== "cuda") {
    throw new Error(`FLEXORA_PARITY_DEVICE must be webgpu or cuda, got '${d}'`);
  }
  return d;
})();

/** Null when {@link PARITY_DEVICE} works here, else why not (printed once, and the parity tests are skipped). */
export const NO_PARITY_DEVICE: string | null = PARITY_DEVICE === "webgpu"
  ? NO_WEBGPU
  : await resolveDevice(PARITY_DEVICE).then(() => null, (e: Error) => e.message);
if (NO_PARITY_DEVICE && PARITY_DEVICE !== "webgpu") {
  console.log(`${PARITY_DEVICE} tests skipped: ${NO_PARITY_DEVICE}`);
}

/**
 * Whether the WebGPU tests can run here: onnxruntime-node's WebGPU provider needs a Vulkan driver Dawn accepts.
 * On a machine without a GPU that is Mesa's lavapipe from `tools/lavapipe.sh`, whose `.lavapipe/` folder this
 * module points the Vulkan loader at when `VK_ICD_FILENAMES` is unset (before any WebGPU session opens).
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

/**
 * Choosing an onnxruntime execution provider: `cpu`, `webgpu`, `cuda`, or `auto` (CUDA when its provider loads
 * here, else the CPU; WebGPU only when asked).
 *
 * The CPU and WebGPU providers ship inside the onnxruntime-node npm package; the CUDA provider is downloaded by
 * the package's install script only when asked (`ONNXRUNTIME_NODE_INSTALL=cuda12`), or copied in offline (see
 * docs/devices.md). WebGPU is Dawn on Vulkan: a GPU's driver, or on a machine without one Mesa's lavapipe
 * (`tools/lavapipe.sh`). A provider is tried by opening a one-node session, once per process.
 *
 * @module
 */

import * as ort from "onnxruntime-node";
import { add } from "../graph/build.ts";
import { Graph } from "../graph/graph.ts";
import { serialize } from "../graph/serialize.ts";

/** A device name as the CLI and the API take it. */
export type Device = "cpu" | "webgpu" | "cuda" | "auto";

/** The devices `--device` accepts. */
export const DEVICES: readonly Device[] = ["auto", "cpu", "webgpu", "cuda"];

/** A device that cannot be used here; the message says how to get it. */
export class DeviceError extends Error {
  override name = "DeviceError";
}

const HOW_TO: Record<"webgpu" | "cuda", string> = {
  cuda: "install onnxruntime-node's CUDA provider on a machine with CUDA 12 and network access: " +
    "ONNXRUNTIME_NODE_INSTALL=cuda12 npx -y deno@2.9.6 install --allow-scripts=npm:onnxruntime-node@1.30.0",
  webgpu:
    "WebGPU needs a Vulkan driver that Dawn accepts and the Vulkan loader (libvulkan1): a GPU's, or on " +
    "the CPU Mesa 23 or later's lavapipe (tools/lavapipe.sh installs it and prints the VK_ICD_FILENAMES to set)",
};

const probes = new Map<string, Promise<string | null>>();

/** Why a provider's native prerequisites are missing, checked quietly before onnxruntime tries (and logs). */
function missingPrerequisite(provider: "webgpu" | "cuda"): string | null {
  if (provider === "cuda") {
    const binding = new URL(
      `../bin/napi-v6/${Deno.build.os}/${Deno.build.arch === "x86_64" ? "x64" : "arm64"}/`,
      import.meta.resolve("onnxruntime-node"),
    );
    try {
      Deno.statSync(new URL("libonnxruntime_providers_cuda.so", binding));
      return null;
    } catch {
      return "onnxruntime-node's CUDA provider is not installed";
    }
  }
  try {
    Deno.dlopen("libvulkan.so.1", {}).close();
    return null;
  } catch {
    return "no Vulkan loader (libvulkan.so.1)";
  }
}

/** Null when the provider opens a session here, else the reason it does not. */
function probe(provider: "webgpu" | "cuda"): Promise<string | null> {
  let p = probes.get(provider);
  const missing = Deno.build.os === "linux" ? missingPrerequisite(provider) : null;
  if (!p && missing) probes.set(provider, p = Promise.resolve(missing));
  if (!p) {
    const g = new Graph({ name: "probe" });
    const model = serialize(g, { y: add(g.input("x", "float32", [1]), 1) });
    p = ort.InferenceSession.create(model, { executionProviders: [provider], logSeverityLevel: 4 })
      .then(async (s) => (await s.release(), null))
      .catch((e: Error) => e.message.split("\n")[0]);
    probes.set(provider, p);
  }
  return p;
}

/** The execution providers for `device`, in order of preference, or a {@link DeviceError} saying how to get it. */
export async function resolveDevice(
  device: Device,
  log: (line: string) => void = () => {},
): Promise<{ device: Exclude<Device, "auto">; providers: string[] }> {
  if (!DEVICES.includes(device)) {
    throw new DeviceError(`unknown device '${device}': expected one of ${DEVICES.join(", ")}`);
  }
  if (device === "cpu") return { device, providers: ["cpu"] };
  if (device === "auto") {
    const reason = await probe("cuda");
    if (reason === null) {
      log("device: cuda (auto)");
      return { device: "cuda", providers: ["cuda", "cpu"] };
    }
    log(`device: cpu (auto: ${reason})`);
    return { device: "cpu", providers: ["cpu"] };
  }
  const reason = await probe(device);
  if (reason !== null) {
    throw new DeviceError(`device '${device}' is unavailable (${reason}); ${HOW_TO[device]}`);
  }
  log(`device: ${device}`);
  return { device, providers: [device, "cpu"] };
}

/**
 * Each execution provider onnxruntime-node can use (`cpu`, `webgpu`, `cuda`) and null when it opens a session
 * here, else why not (what `flexora --version` lists).
 */
export async function providerStatus(): Promise<Record<"cpu" | "webgpu" | "cuda", string | null>> {
  const [webgpu, cuda] = await Promise.all([probe("webgpu"), probe("cuda")]);
  return { cpu: null, webgpu, cuda };
}

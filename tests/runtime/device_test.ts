import assert from "node:assert/strict";
import { DeviceError, resolveDevice } from "../../src/runtime/device.ts";

Deno.test("cpu is always available", async () => {
  assert.deepEqual(await resolveDevice("cpu"), { device: "cpu", providers: ["cpu"] });
});

Deno.test("auto picks a provider that works and logs the choice", async () => {
  const lines: string[] = [];
  const { device, providers } = await resolveDevice("auto", (l) => lines.push(l));
  assert.ok(providers.includes("cpu"));
  assert.match(lines.join("\n"), new RegExp(`device: ${device}`));
});

Deno.test("auto takes CUDA or the CPU, never WebGPU (that runs only when asked)", async () => {
  const lines: string[] = [];
  const { device } = await resolveDevice("auto", (l) => lines.push(l));
  assert.ok(device === "cuda" || device === "cpu", device);
  if (device === "cpu") assert.match(lines[0], /^device: cpu \(auto: .+\)$/);
});

Deno.test("an unavailable CUDA provider says how to install it", async () => {
  const cuda = await resolveDevice("cuda").catch((e) => e);
  if (cuda instanceof DeviceError) assert.match(cuda.message, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
  else assert.equal(cuda.device, "cuda"); // a machine with the CUDA provider installed
});

Deno.test("an unknown device names the value and the choices", async () => {
  await assert.rejects(
    resolveDevice("tpu" as "cpu"),
    /unknown device 'tpu': expected one of auto, cpu, webgpu, cuda/,
  );
});

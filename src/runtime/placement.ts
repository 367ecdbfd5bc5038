/**
 * Which execution provider ran each node of a session, read from onnxruntime's profile of one run: node counts
 * by provider and op type, MatMul FLOPs by provider, and the bytes of the copies onnxruntime inserted between
 * providers (its `MemcpyToHost` / `MemcpyFromHost` nodes). A node on the CPU inside a device graph costs those
 * copies on every run, so the share of MatMul FLOPs on the device and the copied bytes are what to watch.
 *
 * @module
 */

/** Where a session's nodes ran. */
export interface Placement {
  /** The graph's name. */
  readonly graph: string;
  /** Node counts by provider (onnxruntime's name, e.g. `WebGpuExecutionProvider`), then by op type. */
  readonly nodes: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** FLOPs of the MatMul-like nodes (MatMul, FusedMatMul, Gemm) by provider. */
  readonly matmulFlops: Readonly<Record<string, number>>;
  /** Bytes copied between providers inside one run, device to host and host to device. */
  readonly copied: { readonly toHost: number; readonly fromHost: number };
}

/** onnxruntime's name of the CPU provider. */
export const CPU_PROVIDER = "CPUExecutionProvider";

const MATMUL_OPS = new Set(["MatMul", "FusedMatMul", "Gemm"]);

interface ProfileEvent {
  readonly cat?: string;
  readonly name?: string;
  readonly args?: {
    readonly op_name?: string;
    readonly provider?: string;
    readonly output_size?: string;
    readonly input_type_shape?: readonly Record<string, number[]>[];
    readonly output_type_shape?: readonly Record<string, number[]>[];
  };
}

const shapeOf = (typed: Record<string, number[]> | undefined): number[] =>
  Object.values(typed ?? {})[0] ?? [];
const count = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/**
 * FLOPs of a MatMul-like node from its profiled shapes: 2 · (output elements) · K, K the contracted size (the
 * first input's last dimension, or its first for a Gemm with transA).
 */
function matmulFlops(event: ProfileEvent): number {
  const a = shapeOf(event.args?.input_type_shape?.[0]);
  const out = shapeOf(event.args?.output_type_shape?.[0]);
  const k = a.at(-1) ?? 0;
  return 2 * count(out) * k;
}

/**
 * The placement of the nodes of the first run in an onnxruntime profile (the JSON array that
 * `enableProfiling` writes); later runs in the same profile are ignored (every run places nodes alike).
 *
 * @example
 * ```ts
 * import { placementFromProfile } from "./placement.ts";
 * // A node as onnxruntime profiles it: op, provider, input shapes and output shape (float32).
 * const node = (name: string, op: string, provider: string, inputs: number[][], output: number[]) => ({
 *   cat: "Node",
 *   name: `${name}_kernel_time`,
 *   args: {
 *     op_name: op,
 *     provider,
 *     input_type_shape: inputs.map((s) => ({ float: s })),
 *     output_type_shape: [{ float: output }],
 *     output_size: String(4 * output.reduce((a, b) => a * b)),
 *   },
 * });
 * const p = placementFromProfile("g", [
 *   node("mm", "MatMul", "WebGpuExecutionProvider", [[2, 3], [3, 4]], [2, 4]),
 *   node("copy", "MemcpyToHost", "WebGpuExecutionProvider", [[2, 4]], [2, 4]),
 *   node("sum", "Sum", "CPUExecutionProvider", [[2, 4], [2, 4]], [2, 4]),
 * ]);
 * if (p.matmulFlops.WebGpuExecutionProvider !== 48) throw new Error("2·8·3 FLOPs");
 * if (p.copied.toHost !== 32 || p.nodes.CPUExecutionProvider.Sum !== 1) throw new Error("one copy, one CPU Sum");
 * ```
 */
export function placementFromProfile(graph: string, events: readonly ProfileEvent[]): Placement {
  const nodes: Record<string, Record<string, number>> = {};
  const flops: Record<string, number> = {};
  const copied = { toHost: 0, fromHost: 0 };
  const seen = new Set<string>();
  for (const e of events) {
    if (e.cat !== "Node" || !e.name?.endsWith("_kernel_time") || !e.args?.op_name || !e.args.provider) {
      continue;
    }
    if (seen.has(e.name)) break; // the second run starts
    seen.add(e.name);
    const { op_name: op, provider } = e.args;
    (nodes[provider] ??= {})[op] = (nodes[provider][op] ?? 0) + 1;
    if (MATMUL_OPS.has(op)) flops[provider] = (flops[provider] ?? 0) + matmulFlops(e);
    if (op === "MemcpyToHost") copied.toHost += Number(e.args.output_size ?? 0);
    if (op === "MemcpyFromHost") copied.fromHost += Number(e.args.output_size ?? 0);
  }
  return { graph, nodes, matmulFlops: flops, copied };
}

/** The share of MatMul FLOPs that ran on providers other than the CPU (1 when the graph has none). */
export function deviceMatmulShare(p: Placement): number {
  const total = Object.values(p.matmulFlops).reduce((a, b) => a + b, 0);
  return total === 0 ? 1 : 1 - (p.matmulFlops[CPU_PROVIDER] ?? 0) / total;
}

/**
 * One line for a log: nodes per provider, the CPU's op types when the graph runs on a device, the device's share
 * of MatMul FLOPs and the bytes copied between providers per run.
 *
 * @example
 * ```ts
 * import { formatPlacement } from "./placement.ts";
 * const line = formatPlacement({
 *   graph: "lora_train",
 *   nodes: { WebGpuExecutionProvider: { MatMul: 4, Add: 2 }, CPUExecutionProvider: { Sum: 1 } },
 *   matmulFlops: { WebGpuExecutionProvider: 1000 },
 *   copied: { toHost: 2048, fromHost: 1024 },
 * });
 * if (line !== "placement lora_train: 6 nodes on WebGpuExecutionProvider, 1 on CPUExecutionProvider (Sum 1); " +
 *   "MatMul FLOPs 100.0% on the device; copies per run 2.0 KiB to host, 1.0 KiB from host") throw new Error(line);
 * ```
 */
export function formatPlacement(p: Placement): string {
  const total = (ops: Readonly<Record<string, number>>) => Object.values(ops).reduce((a, b) => a + b, 0);
  const providers = Object.entries(p.nodes).sort(([a], [b]) =>
    (a === CPU_PROVIDER ? 1 : 0) - (b === CPU_PROVIDER ? 1 : 0)
  );
  const onDevice = providers.some(([name]) => name !== CPU_PROVIDER);
  const parts = providers.map(([name, ops], i) => {
    const head = `${total(ops)} ${i === 0 ? "nodes " : ""}on ${name}`;
    if (name !== CPU_PROVIDER || !onDevice) return head;
    const list = Object.entries(ops).sort(([, a], [, b]) => b - a).map(([op, n]) => `${op} ${n}`);
    return `${head} (${list.join(", ")})`;
  });
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  let line = `placement ${p.graph}: ${parts.join(", ")}`;
  if (onDevice) {
    line += `; MatMul FLOPs ${(100 * deviceMatmulShare(p)).toFixed(1)}% on the device` +
      `; copies per run ${kib(p.copied.toHost)} to host, ${kib(p.copied.fromHost)} from host`;
  }
  return line;
}

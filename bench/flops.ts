/**
 * Analytic FLOP count of one LoRA train step (multiply and add counted as 2 FLOPs; norms, RoPE, softmax and the
 * optimizer are elementwise and left out). With N = B·T tokens, P_l = a layer's linear weights
 * (q, k, v, o, gate, up, down), A = 4·B·H·T²·Dh (QKᵀ and PV over all T×T scores, as the engine computes them
 * before masking) and L_lo the lowest layer with LoRA:
 *
 *   forward  = 2·N·(L·P_l + V·D)                      every linear, lm_head (tied embedding) included
 *            + L·A                                     attention
 *            + Σ_modules 2·N·R·(in + out)              LoRA branches x·Aᵀ·Bᵀ
 *   backward = Σ_{l = L_lo}^{L−1} (2·N·P_l + 2·A)      input gradients of each layer above L_lo, and its own
 *            + 2·N·D·V                                 lm_head's input gradient
 *            + Σ_modules 4·N·R·(in + out)              dB, d(x·Aᵀ), dA and the branch's input gradient
 *
 * The lowest LoRA layer's q/k/v input gradients are counted although autodiff need not build them (its input
 * does not depend on any trained value): under 1 % of either step. The LM head computes its logits once, in
 * token blocks, and multiplies their gradient into the hidden states' right away: 2·N·D·V forward and backward.
 *
 * @module
 */

import type { Graph, Node } from "../src/graph/graph.ts";
import type { Outputs } from "../src/graph/serialize.ts";
import { atoms, type Dim } from "../src/graph/shape.ts";
import { liveNodes } from "../src/graph/validate.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { tokenBlockSizes } from "../src/model/lm_loss.ts";
import { type LoraConfig, loraModules, moduleDims } from "../src/model/lora.ts";

/** FLOPs of one step, by part. */
export interface StepFlops {
  readonly forward: number;
  readonly backward: number;
  readonly total: number;
}

/** Linear weights of one decoder layer (P_l). */
export function layerLinearWeights(cfg: ModelConfig): number {
  const d = cfg.hiddenSize, q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
  return d * q + 2 * d * kv + q * d + 3 * d * cfg.intermediateSize;
}

/**
 * FLOPs of a LoRA train step on a [batch, seq] token batch; see the module comment for the formula. A step that
 * starts at layer `from` (the frozen-prefix cache feeding that layer's input) runs only the layers from it up.
 */
export function trainStepFlops(
  cfg: ModelConfig,
  lora: LoraConfig,
  batch: number,
  seq: number,
  from = 0,
): StepFlops {
  const n = batch * seq, { numLayers: L, hiddenSize: D, vocabSize: V } = cfg;
  const pl = layerLinearWeights(cfg);
  const attention = 4 * batch * cfg.numHeads * seq * seq * cfg.headDim;
  const branchWidths = loraModules(lora).reduce((s, { module }) => {
    const dims = moduleDims(cfg, module);
    return s + dims.in + dims.out;
  }, 0);
  const loraForward = 2 * n * lora.rank * branchWidths;
  const forward = 2 * n * ((L - from) * pl + V * D) + (L - from) * attention + loraForward;
  const backwardLayers = L - Math.min(...lora.layers);
  const backward = backwardLayers * (2 * n * pl + 2 * attention) + 2 * n * D * V + 2 * loraForward;
  return { forward, backward, total: forward + backward };
}

/** Resolves a dim (`768`, `"B"`, `"B*T"`, `"2*B"`) with sizes for the symbols. */
function resolveDim(dim: Dim, sizes: Readonly<Record<string, number>>): number {
  if (typeof dim === "number") return dim;
  return atoms(dim).reduce((n, a) => {
    const v = /^\d+$/.test(a) ? Number(a) : sizes[a];
    if (v === undefined) throw new Error(`no size for symbol '${a}' of dim '${dim}'`);
    return n * v;
  }, 1);
}

/**
 * FLOPs of every MatMul that serializing `outputs` keeps, with symbolic dims resolved from `sizes`: what the
 * graph executes in GEMMs, as a check on the analytic count (it includes recomputation, and leaves out what
 * autodiff does not build).
 */
export function graphMatmulFlops(
  g: Graph,
  outputs: Outputs,
  sizes: Readonly<Record<string, number>>,
): number {
  let flops = 0;
  const live = liveNodes(g, Object.values(outputs));
  const known: Record<string, number> = { ...sizes };
  // Token blocks (the LM head's): each output of a Split with run-time sizes has a symbol of its own.
  for (const node of live.filter((n) => n.op === "Split")) {
    const { axis } = (node as Node<"Split">).attrs;
    const rows = tokenBlockSizes(resolveDim(node.inputs[0].shape[axis], known), node.outputs.length);
    node.outputs.forEach((y, k) => {
      const d = y.shape[axis];
      if (typeof d === "string" && !(d in known)) known[d] = rows[k];
    });
  }
  for (const node of live) {
    if (node.op !== "MatMul") continue;
    const a = node.inputs[0].shape, y = node.outputs[0].shape;
    const k = resolveDim(a[a.length - 1], known);
    flops += 2 * k * y.reduce<number>((n, d) => n * resolveDim(d, known), 1);
  }
  return flops;
}

/**
 * Rotary position embeddings, rotate-half layout (Hugging Face Llama): x·cos + rotate_half(x)·sin with
 * rotate_half([x1, x2]) = [−x2, x1] over the two halves of each head.
 *
 * Legend: B batch, T time, H heads, Dh head size.
 *
 * @module
 */

import { add, cast, concat, cos, mul, neg, sin, slice, unsqueeze } from "../graph/build.ts";
import type { Value } from "../graph/graph.ts";
import type { ModelConfig } from "./config.ts";

/**
 * Inverse frequencies θ^(−2i/Dh) for i < Dh/2, with Llama 3 scaling when the config asks for it (the smooth
 * interpolation between scaled low frequencies and unscaled high ones, as `transformers` computes it).
 */
export function inverseFrequencies(cfg: ModelConfig): Float32Array {
  const half = cfg.headDim / 2;
  const inv = Float32Array.from({ length: half }, (_, i) => 1 / cfg.ropeTheta ** ((2 * i) / cfg.headDim));
  const s = cfg.ropeScaling;
  if (!s) return inv;
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) /
      (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

/**
 * cos and sin tables [B, 1, T, Dh] for int64 positions [B, T], in the compute type. The angles are formed in the
 * graph's wide type: in float16, position · frequency would be off by whole radians past position 2048.
 */
export function ropeTables(positions: Value, cfg: ModelConfig): { cos: Value; sin: Value } {
  const g = positions.graph;
  const inv = g.constant(Array.from(inverseFrequencies(cfg)), [cfg.headDim / 2], g.wide);
  const angles = mul(unsqueeze(cast(positions, g.wide), [2]), inv); // [B, T, Dh/2]
  const emb = unsqueeze(concat([angles, angles], 2), [1]); // [B, 1, T, Dh]
  return { cos: cast(cos(emb), g.float), sin: cast(sin(emb), g.float) };
}

/** Rotates x [B, H, T, Dh] by the tables of {@link ropeTables}. */
export function applyRope(x: Value, tables: { cos: Value; sin: Value }): Value {
  const half = Number(x.shape[x.shape.length - 1]) / 2;
  const x1 = slice(x, [0], [half], [-1]);
  const x2 = slice(x, [half], [Infinity], [-1]);
  const rotated = concat([neg(x2), x1], -1);
  return add(mul(x, tables.cos), mul(rotated, tables.sin));
}

/**
 * A PEFT LoRA adapter as a GGUF LoRA adapter, the format llama.cpp (`--lora FILE`) and Ollama (`ADAPTER FILE`)
 * load next to a GGUF base model.
 *
 * - Metadata: `general.type = "adapter"`, `general.architecture` = the base's (llama.cpp refuses an adapter of
 *   another architecture), `adapter.type = "lora"`, `adapter.lora.alpha`.
 * - Tensors: `<base tensor>.lora_a` [R, in] and `<base tensor>.lora_b` [out, R] (`blk.3.attn_q.weight.lora_a`),
 *   only for the modules the adapter has (llama.cpp leaves the others alone); the rows of q/k `lora_b` are
 *   permuted as the base's q/k rows are, so B·A lines up with the permuted base weight.
 * - Scale: llama.cpp scales each branch by alpha / R (R read from `lora_b`). An rsLoRA adapter (alpha / √R) is
 *   written with alpha·√R, so the scale llama.cpp computes is the one the adapter was trained with.
 *
 * The adapter is read with the same checks as everywhere in flexora (`readAdapter`): a module without a
 * llama.cpp counterpart, or shapes that do not fit the base (an adapter made for another model), are errors
 * naming the tensor.
 *
 * @module
 */

import { basename, resolve } from "node:path";
import { type ModelConfig, readConfig } from "../../model/config.ts";
import { loraScale } from "../../model/lora.ts";
import { readAdapter } from "../../model/peft.ts";
import { type GgufDType, type GgufTensor, meta, writeGguf } from "./container.ts";
import type { GgufExport } from "./model.ts";
import { ggufArchitecture, ggufName, permuteRope, ropeHeads } from "./names.ts";

const LORA = /^(.+)\.lora_([AB])\.weight$/;

/**
 * The alpha to write so that llama.cpp's alpha / R equals the adapter's scale (alpha / R, or alpha / √R with
 * rsLoRA).
 *
 * @example
 * ```ts
 * import { ggufAlpha } from "./adapter.ts";
 * const alpha = ggufAlpha({ rank: 16, alpha: 8, rslora: true, targets: ["q_proj"], layers: [0] });
 * if (alpha / 16 !== 8 / Math.sqrt(16)) throw new Error("rsLoRA folded into alpha");
 * ```
 */
export function ggufAlpha(lora: Parameters<typeof loraScale>[0]): number {
  return loraScale(lora) * lora.rank;
}

/**
 * Writes the PEFT adapter in `adapterDir`, made for the model in `base` (a directory or its parsed config), to
 * the GGUF file `out`, with matrices stored as `dtype` (default F32).
 *
 * @example
 * ```ts
 * import { gguf } from "@huggingface/gguf";
 * import { initLora, validateLora } from "../../model/lora.ts";
 * import { readConfig } from "../../model/config.ts";
 * import { writeAdapter } from "../../model/peft.ts";
 * import { exportAdapterGguf } from "./adapter.ts";
 * const base = new URL("../../../fixtures/tiny-llama", import.meta.url).pathname;
 * const cfg = await readConfig(base);
 * const lora = validateLora(cfg, { rank: 2, alpha: 4, rslora: false, targets: ["q_proj"], layers: [1] });
 * const tmp = await Deno.makeTempDir();
 * await writeAdapter(`${tmp}/peft`, lora, initLora(cfg, lora, 0));
 * await exportAdapterGguf(`${tmp}/peft`, base, `${tmp}/a.gguf`);
 * const { metadata, tensorInfos } = await gguf(`${tmp}/a.gguf`, { allowLocalFile: true });
 * if ((metadata as Record<string, unknown>)["adapter.lora.alpha"] !== 4) throw new Error("alpha as given");
 * if (tensorInfos.map((t) => t.name).join() !== "blk.1.attn_q.weight.lora_a,blk.1.attn_q.weight.lora_b") throw new Error();
 * ```
 */
export async function exportAdapterGguf(
  adapterDir: string,
  base: string | ModelConfig,
  out: string,
  options: { dtype?: GgufDType; name?: string } = {},
): Promise<GgufExport> {
  const cfg = typeof base === "string" ? await readConfig(resolve(base)) : base;
  const arch = ggufArchitecture(cfg.architecture).name;
  const adapter = await readAdapter(adapterDir, cfg);
  const dtype = options.dtype ?? "F32";
  const tensors: GgufTensor[] = Object.entries(adapter.params).map(([name, t]) => {
    const [, module, matrix] = LORA.exec(name)!; // readAdapter only returns LoRA weights
    const heads = matrix === "B" ? ropeHeads(cfg, `${module}.weight`) : 0;
    const data = t.data as Float32Array;
    return {
      name: `${ggufName(`${module}.weight`)}.lora_${matrix.toLowerCase()}`,
      shape: t.dims,
      dtype,
      data: () => heads ? permuteRope(data, heads, t.dims[1]) : data,
    };
  });
  const { bytes } = await writeGguf(out, {
    "general.architecture": meta.string(arch),
    "general.type": meta.string("adapter"),
    "general.name": meta.string(options.name ?? basename(resolve(adapterDir))),
    "adapter.type": meta.string("lora"),
    "adapter.lora.alpha": meta.f32(ggufAlpha(adapter.config)),
  }, tensors);
  return { path: resolve(out), architecture: arch, dtype, tensors: tensors.length, bytes };
}

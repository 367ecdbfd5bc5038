/**
 * Loading a Hugging Face model directory: config, safetensors weights (single file or shards) and tokenizer,
 * fully offline.
 *
 * @module
 */

import { resolve } from "node:path";
import type { Placement } from "../runtime/placement.ts";
import { createSession, type Session } from "../runtime/session.ts";
import type { ComputeFloat } from "../graph/dtype.ts";
import { serialize } from "../graph/serialize.ts";
import { type ModelConfig, readConfig } from "./config.ts";
import type { BuiltGraph } from "./graphs.ts";
import { openCheckpoint } from "./safetensors.ts";
import { loadTokenizer, type Tokenizer } from "./tokenizer.ts";
import { BASE_DTYPES, type BaseDtype, WeightStore } from "./weights.ts";
import { modelDir } from "../hub/source.ts";
import type { DownloadModelOptions } from "../hub/snapshot.ts";

/** A loaded model: what graphs are built from. */
export interface Model {
  /** The local folder it was read from (for a Hub id, its snapshot in the Hugging Face cache). */
  readonly dir: string;
  readonly config: ModelConfig;
  readonly tokenizer: Tokenizer;
  readonly weights: WeightStore;
  /** The compute type its graphs are built in unless they ask for another (see {@link LoadModelOptions}). */
  readonly dtype: ComputeFloat;
  /** The execution providers its sessions run on unless a call names others (see {@link LoadModelOptions}). */
  readonly providers: readonly string[];
  /** Creates an onnxruntime session for a graph built on this model's weights. */
  session(
    built: BuiltGraph,
    options?: { threads?: number; providers?: string[]; deviceOutputs?: readonly string[] },
  ): Promise<Session>;
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /**
   * Compute type (default float32). float16 is mixed precision, meant for GPUs: base weights become float16
   * initializers (F32/BF16 converted once in memory), activations are float16, and RMSNorm statistics, attention
   * softmax, RoPE angles, the LM head's softmax and losses, LoRA weights, gate logits and optimizer state stay
   * float32; training scales the loss dynamically. On the CPU, onnxruntime emulates float16 (see
   * {@link dtypeWarning}). float64 is for gradient checks.
   */
  dtype?: ComputeFloat;
  /**
   * How the frozen base weights are stored, independently of the compute type (default: as the checkpoint stores
   * them): `bf16` or `f16` keep an F32 checkpoint's weights as one 16-bit copy, a file written once into
   * `weightCacheDir` and memory-mapped by every session, each weight cast to the compute type in the graph right
   * before its use; LoRA weights, gates and optimizer state stay float32 (see docs/precision.md).
   */
  baseDtype?: BaseDtype;
  /**
   * The folder of the 16-bit weight copies that `baseDtype` and float16 graphs read (default `weightCacheDir()`:
   * `$XDG_CACHE_HOME/flexora/weights`, else `~/.cache/flexora/weights`).
   */
  weightCacheDir?: string;
  /**
   * onnxruntime execution providers, in order of preference, for every session built on the model (training,
   * scoring, generation) unless a call names others; default `["cpu"]`. `resolveDevice` turns a device name
   * into this list.
   */
  providers?: readonly string[];
  /**
   * How a Hub id is fetched (settings, progress, warnings); default: the Hugging Face environment variables
   * (see docs/hub.md).
   */
  hub?: DownloadModelOptions;
  /**
   * Called once per session, after its first run, with where its nodes ran (see {@link Placement}); the CLI and
   * the sidecar log it when the device is not the CPU. Profiling that first run costs a little time.
   */
  onPlacement?: (placement: Placement) => void;
}

/**
 * Loads config, checkpoint and tokenizer from `model`: a folder, or a Hub id (`org/name[@revision]`) fetched
 * into the Hugging Face cache first (a folder that exists wins); every problem names the file.
 *
 * @example
 * ```ts
 * import { loadModel } from "./model.ts";
 * const model = await loadModel(new URL("../../fixtures/tiny-llama", import.meta.url).pathname);
 * if (model.config.numLayers !== 3) throw new Error("the fixture has 3 layers");
 * if (model.tokenizer.encode("what color")[0] !== 1) throw new Error("BOS first");
 * const half = await loadModel(new URL("../../fixtures/tiny-llama", import.meta.url).pathname, {
 *   dtype: "float16",
 * });
 * if (half.dtype !== "float16") throw new Error("graphs built on it compute in float16");
 * ```
 */
export async function loadModel(model: string, options: LoadModelOptions = {}): Promise<Model> {
  const dtype = options.dtype ?? "float32";
  if (!["float32", "float16", "float64"].includes(dtype)) {
    throw new Error(`'dtype' must be float32, float16 or float64, got ${JSON.stringify(dtype)}`);
  }
  if (options.baseDtype !== undefined && !BASE_DTYPES.includes(options.baseDtype)) {
    throw new Error(`'baseDtype' must be bf16, f16 or f32, got ${JSON.stringify(options.baseDtype)}`);
  }
  const root = resolve(await modelDir(model, options.hub));
  const config = await readConfig(root);
  const weights = new WeightStore(await openCheckpoint(root), {
    dtype,
    baseDtype: options.baseDtype,
    cacheDir: options.weightCacheDir,
  });
  const tokenizer = await loadTokenizer(root, { modelVocabSize: config.vocabSize });
  const providers = [...(options.providers ?? ["cpu"])];
  return {
    dir: root,
    config,
    tokenizer,
    weights,
    dtype,
    providers,
    async session(built, sessionOptions = {}) {
      return await createSession(serialize(built.graph, built.outputs), {
        threads: sessionOptions.threads,
        deviceOutputs: sessionOptions.deviceOutputs,
        providers: sessionOptions.providers ?? providers,
        optimization: built.graph.float === "float64" ? "basic" : "all",
        onPlacement: options.onPlacement,
        name: built.graph.name,
        ...await weights.sessionData(built.graph),
      });
    },
  };
}

/**
 * A warning when `dtype` is float16 and the first execution provider is the CPU's: onnxruntime runs float16
 * graphs there by casting to float32 around every op that lacks a float16 CPU kernel, so it gains nothing over
 * float32 (`bench/float16.ts` measured 0.94–1.03× the time) and loses precision. Null otherwise.
 *
 * @example
 * ```ts
 * import { dtypeWarning } from "./model.ts";
 * if (dtypeWarning("float16", ["cpu"]) === null) throw new Error("float16 on CPU warns");
 * if (dtypeWarning("float16", ["cuda", "cpu"]) !== null) throw new Error("on CUDA it does not");
 * ```
 */
export function dtypeWarning(dtype: ComputeFloat, providers: readonly string[] = ["cpu"]): string | null {
  if (dtype !== "float16" || (providers[0] ?? "cpu") !== "cpu") return null;
  return "dtype float16 on the CPU is emulated (onnxruntime casts to float32 around ops without float16 " +
    "CPU kernels): no faster than float32 and less precise; float16 is meant for GPUs";
}

/**
 * A PEFT adapter converted to a GGUF LoRA adapter for the servers that take GGUF (llama.cpp, and Ollama for bases
 * it cannot convert safetensors adapters for). The conversion needs the base model's `config.json` (head counts
 * for llama.cpp's q/k row order, the architecture): from `options.modelDir`, else from the adapter's
 * `base_model_name_or_path` when that is a folder holding one (flexora writes the model folder there).
 *
 * The exporter is imported when a conversion is needed, not with the plugins: it reads adapters with the model
 * engine's reader, which loads onnxruntime, and plugins that never convert should not.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { AdapterFiles } from "./adapter.ts";
import { stringOption } from "./options.ts";
import { type AdapterRef, AttachError, type ServerConfig } from "./types.ts";

/** The base model folder of `adapter` (holding `config.json`), or null when neither source names one. */
export async function baseModelDir(server: ServerConfig, files: AdapterFiles): Promise<string | null> {
  const configured = stringOption(server, "modelDir");
  if (configured !== undefined) return configured;
  if (files.baseModel === null) return null;
  const found = await Deno.stat(join(files.baseModel, "config.json")).then((s) => s.isFile, () => false);
  return found ? files.baseModel : null;
}

/** What a conversion wrote. */
export interface GgufAdapter {
  readonly path: string;
  /** llama.cpp's architecture of the base (`general.architecture`). */
  readonly architecture: string;
  /** The base model folder the adapter was converted for. */
  readonly modelDir: string;
}

/**
 * Writes `adapter` as the GGUF LoRA adapter `out` (atomically; its folder is made if missing) for the base model
 * in `modelDir`. An adapter
 * that does not fit the base, or has modules llama.cpp lacks, is an {@link AttachError} naming the tensor
 * (`what` starts the message).
 *
 * @example
 * ```ts
 * import { AttachError } from "./types.ts";
 * import { writeAdapterGguf } from "./gguf.ts";
 * const dir = await Deno.makeTempDir();
 * const error = await writeAdapterGguf("Cannot attach 'a'", { name: "a", path: dir, rank: 4 }, dir, `${dir}/a.gguf`)
 *   .catch((e) => e);
 * if (!(error instanceof AttachError) || !error.message.startsWith("Cannot attach 'a': ")) throw error;
 * ```
 */
export async function writeAdapterGguf(
  what: string,
  adapter: AdapterRef,
  modelDir: string,
  out: string,
): Promise<GgufAdapter> {
  try {
    const { exportAdapterGguf } = await import("../src/export/gguf/adapter.ts");
    await Deno.mkdir(dirname(out), { recursive: true });
    const written = await exportAdapterGguf(adapter.path, modelDir, out, { name: adapter.name });
    return { path: written.path, architecture: written.architecture, modelDir };
  } catch (e) {
    throw new AttachError(`${what}: cannot convert the adapter to GGUF (${(e as Error).message})`, {
      cause: e,
    });
  }
}

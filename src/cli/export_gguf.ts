/**
 * `flexora export-gguf`: a model directory, or a PEFT adapter made for it, as a GGUF file for llama.cpp and Ollama.
 *
 * @module
 */

import { exportAdapterGguf } from "../export/gguf/adapter.ts";
import type { GgufDType } from "../export/gguf/container.ts";
import { exportModelGguf } from "../export/gguf/model.ts";
import { choiceOption, requireString } from "./args.ts";
import type { Command } from "./command.ts";
import { MODEL_ARG_HELP, modelFolder } from "./model_options.ts";

/** How to run what was written, for the plain-text output. */
function usage(out: string, adapter: boolean): string {
  return adapter
    ? `llama.cpp: llama-server -m BASE.gguf --lora ${out}   Ollama: ADAPTER ${out} in a Modelfile FROM the base`
    : `llama.cpp: llama-server -m ${out}   Ollama: FROM ${out} in a Modelfile`;
}

export const exportGgufCommand: Command = {
  name: "export-gguf",
  summary: "write a model, or a PEFT adapter made for it, as GGUF for llama.cpp and Ollama",
  usage: "--model DIR|ID [--adapter DIR] --out FILE [--dtype f32|f16] [--json]",
  options: {
    model: { type: "string" },
    adapter: { type: "string" },
    out: { type: "string" },
    dtype: { type: "string" },
  },
  help: {
    model: `${MODEL_ARG_HELP}; llama, mistral or qwen2`,
    adapter: "DIR  PEFT LoRA adapter made for --model: write it as a GGUF LoRA adapter instead of the model",
    out: "FILE  the GGUF file to write",
    dtype: "D  f32 or f16 for matrices (default: f16 for a 16-bit checkpoint, else f32; adapters f32)",
  },
  async run(values, _positionals, io) {
    const out = requireString(values, "out");
    const model = await modelFolder(requireString(values, "model"), io);
    const dtype = values.dtype === undefined
      ? undefined
      : choiceOption(values, "dtype", ["f32", "f16"], "f32").toUpperCase() as GgufDType;
    const adapter = values.adapter as string | undefined;
    const result = adapter === undefined
      ? await exportModelGguf(model, out, { dtype })
      : await exportAdapterGguf(adapter, model, out, { dtype });
    const kind = adapter === undefined ? "model" : "adapter";
    if (values.json) io.out(JSON.stringify({ kind, ...result }));
    else {
      const size = `${(result.bytes / 2 ** 20).toFixed(1)} MiB`;
      io.out(
        `wrote ${result.path}: ${kind}, ${result.architecture}, ${result.dtype}, ` +
          `${result.tensors} tensors, ${size}`,
      );
      io.out(usage(result.path, adapter !== undefined));
    }
    return 0;
  },
};

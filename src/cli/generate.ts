/**
 * `flexora generate`: text from a prompt, greedy or sampled, with a KV cache.
 *
 * @module
 */

import { generate as run } from "../model/generate.ts";
import { buildStepGraph, kvOutputs } from "../model/graphs.ts";
import { idsOption, numberOption } from "./args.ts";
import { type Command, UsageError } from "./command.ts";
import { MODEL_HELP, MODEL_OPTIONS, openModel } from "./model_options.ts";

export const generateCommand: Command = {
  name: "generate",
  summary: "generate text from a prompt (greedy, or sampled with temperature/top-p/seed)",
  usage: "--model DIR|ID (--prompt TEXT | --prompt-ids 1,2,3) --max-tokens N [--greedy] [--temperature T] " +
    "[--top-p P] [--seed S] [--adapter DIR] [--device D] [--dtype T] [--json]",
  options: {
    ...MODEL_OPTIONS,
    prompt: { type: "string" },
    "prompt-ids": { type: "string" },
    "max-tokens": { type: "string" },
    greedy: { type: "boolean" },
    temperature: { type: "string" },
    "top-p": { type: "string" },
    seed: { type: "string" },
  },
  help: {
    ...MODEL_HELP,
    prompt: "TEXT  prompt text (the tokenizer adds BOS)",
    "prompt-ids": "IDS  prompt as comma-separated token ids",
    "max-tokens": "N  tokens to generate at most",
    greedy: "pick the most likely token (the default without --temperature)",
    temperature: "T  sample at temperature T > 0",
    "top-p": "P  nucleus sampling mass in (0, 1] (default 1)",
    seed: "S  sampler seed (default 0)",
  },
  async run(values, _positionals, io) {
    const ids = idsOption(values, "prompt-ids");
    if ((ids === undefined) === (values.prompt === undefined)) {
      throw new UsageError("give exactly one of --prompt and --prompt-ids");
    }
    const maxTokens = numberOption(values, "max-tokens", { min: 0, integer: true });
    if (maxTokens === undefined) throw new UsageError("--max-tokens is required");
    const temperature = numberOption(values, "temperature", { positive: true });
    const topP = numberOption(values, "top-p", { positive: true, max: 1 });
    const seed = numberOption(values, "seed", { integer: true });
    const { model, adapterSpec, adapterInputs, warning } = await openModel(values, io);
    if (warning) io.err(`warning: ${warning}`);
    const prompt = ids ?? model.tokenizer.encode(values.prompt as string);
    const bad = prompt.find((id) => id >= model.config.vocabSize);
    if (bad !== undefined) {
      throw new UsageError(`--prompt-ids has ${bad}, past the vocabulary (${model.config.vocabSize})`);
    }
    const session = await model.session(buildStepGraph(model.config, model.weights, adapterSpec), {
      deviceOutputs: kvOutputs(model.config), // the KV cache stays on the device between tokens (WebGPU)
    });
    const stop = [...model.config.eosTokenIds];
    const out = await run(session, model.config, prompt, {
      maxTokens,
      greedy: values.greedy === true,
      temperature,
      topP,
      seed,
      stop,
      adapterInputs,
      dtype: model.dtype,
    });
    const text = model.tokenizer.decode(out, { skipSpecialTokens: true });
    io.out(values.json ? JSON.stringify({ ids: out, text }) : text);
    await session.release();
    return 0;
  },
};

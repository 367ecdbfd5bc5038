/**
 * Tokenizers of local model directories, loaded with transformers.js `AutoTokenizer` and never from the network.
 *
 * How transformers.js 4.3.1 is kept offline under Deno (read from its `src/utils/hub.js` and
 * `src/utils/model_registry/get_tokenizer_files.js`, and checked by `tests/model/tokenizer_test.ts`):
 *
 * - `from_pretrained(path, { local_files_only: true })` alone is not enough: `AutoTokenizer` first asks whether
 *   `tokenizer_config.json` exists through `get_file_metadata`, which is not given the options and sends a Range
 *   request to huggingface.co for any path that looks like a model id (`models/tiny` does). Only
 *   `env.allowRemoteModels = false` stops that request.
 * - A path that looks like a model id is also looked up under `env.localModelPath` (inside transformers.js's own
 *   package), not the working directory. The directory is therefore passed as an absolute path, which never looks
 *   like a model id: nothing would be downloaded even if `allowRemoteModels` were switched back on.
 * - Deno has the web Cache API, so transformers.js turns `env.useBrowserCache` on there and would first look each file
 *   up in Deno's web cache under a huggingface.co URL. `useBrowserCache` and `useFSCache` are switched off, so files
 *   are read straight from the directory and nothing is written to any cache.
 *
 * These `env` fields are process-wide in transformers.js. {@link loadTokenizer} sets them on each call (importing
 * this module changes nothing); flexora never downloads models, so no other part of it needs them otherwise.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { loadTokenizer } from "./tokenizer.ts";
 * const dir = fileURLToPath(new URL("../../fixtures/tiny-llama-spm", import.meta.url));
 * const tokenizer = await loadTokenizer(dir, { modelVocabSize: 481 }); // config.json's vocab_size
 * const ids = tokenizer.encode("Once upon a time");
 * if (ids[0] !== tokenizer.bosTokenId) throw new Error("the post-processor adds BOS");
 * if (tokenizer.decode(ids, { skipSpecialTokens: true }) !== "Once upon a time") throw new Error("round trip");
 * ```
 *
 * @module
 */

import { join, resolve } from "node:path";
import { AutoTokenizer, env, type PreTrainedTokenizer } from "@huggingface/transformers";

/** Text to token ids and back, with the special ids and chat template of a model directory. */
export interface Tokenizer {
  /**
   * Token ids of `text`; with `addSpecialTokens` (default true) the BOS the tokenizer's post-processor adds,
   * unless the text already starts with the BOS token (as chat templates write it).
   */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Number of ids the tokenizer can produce (max id + 1, including added tokens). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** The id of `tokenizer_config.json`'s `pad_token`; null when it names none (no fallback to EOS). */
  readonly padTokenId: number | null;
  /** Renders chat messages with the tokenizer's chat template (error naming the directory if it has none). */
  applyChatTemplate(
    messages: readonly { role: string; content: string }[],
    options?: { addGenerationPrompt?: boolean },
  ): string;
  /** The underlying transformers.js tokenizer, for what this interface does not cover. */
  readonly raw: unknown;
}

/** A tokenizer directory that cannot be loaded or used; the message names the directory or file. */
export class TokenizerError extends Error {
  override name = "TokenizerError";
}

/** Makes transformers.js read local files only, and read them directly (see the module documentation). */
function useLocalFilesOnly(): void {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useBrowserCache = false;
  env.useFSCache = false;
}

/** Throws a {@link TokenizerError} naming `file` when it is missing or not a file. */
async function requireFile(file: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(file);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
    throw new TokenizerError(`${file}: cannot read the tokenizer (${why})`, { cause: e });
  }
  if (!info.isFile) throw new TokenizerError(`${file}: cannot read the tokenizer (not a file)`);
}

/** After transformers.js failed: throws a {@link TokenizerError} naming the first file that is not a JSON object. */
async function diagnose(files: readonly string[]): Promise<void> {
  for (const file of files) {
    let json: unknown;
    try {
      json = JSON.parse(await Deno.readTextFile(file));
    } catch (e) {
      throw new TokenizerError(`${file}: not valid JSON (${(e as Error).message})`, { cause: e });
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new TokenizerError(`${file}: expected a JSON object, got ${JSON.stringify(json)}`);
    }
  }
}

/** A special token named in `tokenizer_config.json`: a string or a serialized `AddedToken`. */
function specialToken(config: Record<string, unknown>, key: string): string | null {
  const value = config[key];
  if (typeof value === "string") return value;
  if (
    typeof value === "object" && value !== null &&
    typeof (value as { content?: unknown }).content === "string"
  ) {
    return (value as { content: string }).content;
  }
  return null;
}

class LocalTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;

  constructor(
    readonly raw: PreTrainedTokenizer,
    readonly dir: string,
    /** The text of `chat_template.jinja`, where newer `transformers` save the template instead of the config. */
    readonly template: string | null,
  ) {
    const vocab: Map<string, number> = raw.get_vocab();
    let maxId = -1; // a loop, not Math.max(...ids): vocabularies of 150k+ ids overflow the argument stack
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    const config = raw.config as Record<string, unknown>;
    const id = (key: string) => {
      const token = specialToken(config, key);
      return token === null ? null : vocab.get(token) ?? null;
    };
    this.bosTokenId = id("bos_token");
    this.eosTokenId = id("eos_token");
    this.padTokenId = id("pad_token");
  }

  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    // Text that already starts with the BOS token (a chat template writes it) gets no second one.
    const bos = specialToken(this.raw.config as Record<string, unknown>, "bos_token");
    const leadingBos = bos !== null && text.startsWith(bos);
    return this.raw.encode(text, { add_special_tokens: (options.addSpecialTokens ?? true) && !leadingBos });
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const bad = ids.find((id) => !(Number.isInteger(id) && id >= 0 && id < this.vocabSize));
    if (bad !== undefined) {
      throw new TokenizerError(
        `cannot decode id ${bad}: the tokenizer in '${this.dir}' has ids 0..${this.vocabSize - 1}`,
      );
    }
    if (ids.length === 0) return ""; // transformers.js rejects an empty list
    return this.raw.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  applyChatTemplate(
    messages: readonly { role: string; content: string }[],
    options: { addGenerationPrompt?: boolean } = {},
  ): string {
    if (this.raw.chat_template === null && this.template === null) {
      throw new TokenizerError(
        `the tokenizer in '${this.dir}' has no chat template ('chat_template' in tokenizer_config.json, or chat_template.jinja)`,
      );
    }
    return this.raw.apply_chat_template(messages.map((m) => ({ ...m })), {
      tokenize: false,
      add_generation_prompt: options.addGenerationPrompt ?? false,
      ...(this.raw.chat_template === null ? { chat_template: this.template } : {}),
    });
  }
}

/**
 * Loads `<dir>/tokenizer.json` (+ tokenizer_config.json, which transformers.js requires, and chat_template.jinja when
 * there is one). If `modelVocabSize` is given, a tokenizer that can produce ids >= modelVocabSize is an error naming
 * the directory and both sizes. Missing/invalid files: error naming the file.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { loadTokenizer, TokenizerError } from "./tokenizer.ts";
 * const dir = fileURLToPath(new URL("../../fixtures/tiny-llama", import.meta.url));
 * const error = await loadTokenizer(dir, { modelVocabSize: 128 }).catch((e) => e);
 * if (!(error instanceof TokenizerError) || !/vocab_size is 128/.test(error.message)) {
 *   throw new Error("a 256-token tokenizer does not fit a 128-token model");
 * }
 * ```
 */
export async function loadTokenizer(
  dir: string,
  options: { modelVocabSize?: number } = {},
): Promise<Tokenizer> {
  const { modelVocabSize } = options;
  if (modelVocabSize !== undefined && !(Number.isInteger(modelVocabSize) && modelVocabSize > 0)) {
    throw new TokenizerError(`'modelVocabSize' must be a positive integer, got ${modelVocabSize}`);
  }
  const root = resolve(dir);
  const files = [join(root, "tokenizer.json"), join(root, "tokenizer_config.json")];
  for (const file of files) await requireFile(file);
  const templateFile = join(root, "chat_template.jinja");
  const template = await Deno.readTextFile(templateFile).catch((e) => {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new TokenizerError(`${templateFile}: cannot read the chat template (${e.message})`, { cause: e });
  });

  useLocalFilesOnly();
  let raw: PreTrainedTokenizer;
  try {
    raw = await AutoTokenizer.from_pretrained(root, { local_files_only: true });
  } catch (e) {
    await diagnose(files);
    throw new TokenizerError(`cannot load the tokenizer in '${root}': ${(e as Error).message}`, { cause: e });
  }
  const tokenizer = new LocalTokenizer(raw, root, template);
  const { vocabSize } = tokenizer;
  if (modelVocabSize !== undefined && vocabSize > modelVocabSize) {
    const ids = `ids up to ${vocabSize - 1} (vocab size ${vocabSize})`;
    throw new TokenizerError(
      `the tokenizer in '${root}' can produce ${ids}, but the model's vocab_size is ${modelVocabSize}`,
    );
  }
  return tokenizer;
}

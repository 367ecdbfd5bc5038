/**
 * Examples to token sequences for training: the loss is taken on the completion's tokens only.
 *
 * A sequence is `encode(prompt + completion)` (with the tokenizer's BOS, and EOS appended on request); its
 * targets start at `encode(prompt).length`, the way `Scorer` takes a choice's tokens as those after the prompt's
 * own. Sequences longer than `maxLength` lose tokens from the end; one left with no target is dropped.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { loadTokenizer } from "../model/tokenizer.ts";
 * import { tokenizeExamples } from "./tokenize.ts";
 * const tokenizer = await loadTokenizer(fileURLToPath(new URL("../../fixtures/tiny-llama", import.meta.url)));
 * const set = tokenizeExamples([{ prompt: "the sea is", completion: " blue", source: "x:1" }], tokenizer, {
 *   maxLength: 32,
 * });
 * const [seq] = set.sequences;
 * if (seq.ids.length - seq.targetFrom! !== set.tokens) throw new Error("targets are the completion's tokens");
 * ```
 *
 * @module
 */

import type { Sequence } from "./sequence.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import type { Example } from "./example.ts";
import { DataError } from "./jsonl.ts";

/** Tokenized examples and what truncation did to them. */
export interface TokenizedSet {
  /** `ids` = encode(prompt + completion) (+ EOS), `targetFrom` = encode(prompt).length; in example order. */
  readonly sequences: readonly Sequence[];
  /** Examples cut to `maxLength` (tokens dropped from the end), including those then dropped. */
  readonly truncated: number;
  /** Examples with no completion tokens left after truncation (removed from `sequences`). */
  readonly dropped: number;
  /** Total target tokens of `sequences`. */
  readonly tokens: number;
}

/** Options of {@link tokenizeExamples}. */
export interface TokenizeOptions {
  /** Longest sequence kept, in tokens (BOS and EOS included). */
  maxLength: number;
  /** Append the tokenizer's EOS (a target: the model learns to stop) when it has one (default false). */
  appendEos?: boolean;
}

/**
 * Tokenizes `examples`. If every example is dropped, a {@link DataError} saying that no example has completion
 * tokens after truncation to `maxLength` (with its value).
 *
 * A target is a token the model predicts, so the first token of a sequence never is one: the targets of a
 * sequence are `ids.slice(max(targetFrom, 1))`, as in `batchFeeds`.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { DataError } from "./jsonl.ts";
 * import { loadTokenizer } from "../model/tokenizer.ts";
 * import { tokenizeExamples } from "./tokenize.ts";
 * const tokenizer = await loadTokenizer(fileURLToPath(new URL("../../fixtures/tiny-llama", import.meta.url)));
 * const long = { prompt: "the color of the sea is", completion: " blue", source: "x:1" };
 * try {
 *   tokenizeExamples([long], tokenizer, { maxLength: 3 });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof DataError) || !e.message.includes("maxLength 3")) throw e;
 * }
 * ```
 */
export function tokenizeExamples(
  examples: readonly Example[],
  tokenizer: Tokenizer,
  options: TokenizeOptions,
): TokenizedSet {
  const { maxLength, appendEos = false } = options;
  if (!(Number.isInteger(maxLength) && maxLength > 0)) {
    throw new RangeError(`'maxLength' must be a positive integer, got ${maxLength}`);
  }
  const eos = appendEos ? tokenizer.eosTokenId : null;
  const sequences: Sequence[] = [];
  let truncated = 0, dropped = 0, tokens = 0;
  for (const example of examples) {
    const targetFrom = tokenizer.encode(example.prompt).length;
    let ids = tokenizer.encode(example.prompt + example.completion);
    if (eos !== null) ids.push(eos);
    if (ids.length > maxLength) {
      ids = ids.slice(0, maxLength);
      truncated++;
    }
    const targets = ids.length - Math.max(targetFrom, 1);
    if (targets <= 0) {
      dropped++;
      continue;
    }
    sequences.push({ ids, targetFrom });
    tokens += targets;
  }
  if (sequences.length === 0 && examples.length > 0) {
    throw new DataError(
      `no example has completion tokens after truncation to maxLength ${maxLength} ` +
        `(all ${examples.length} dropped; the first is ${examples[0].source})`,
    );
  }
  return { sequences, truncated, dropped, tokens };
}

/**
 * Log-probabilities of generated tokens and their OpenAI formats.
 *
 * Like vLLM's default (`logprobs_mode` raw_logprobs), they are the model's own distribution: log-softmax of the
 * raw logits, before temperature and top-p. The chosen token's entry is always there, whatever was asked for.
 *
 * @module
 */

import type { Tokenizer } from "../../model/tokenizer.ts";

/** Most alternatives per token a request may ask for (vLLM's default `max_logprobs`). */
export const MAX_TOP_LOGPROBS = 20;

/** OpenAI's stand-in for minus infinity, which JSON cannot hold. */
const FLOOR = -9999;

/** One generated token's log-probability and the `top` most likely alternatives (most likely first). */
export interface TokenLogprob {
  readonly id: number;
  readonly logprob: number;
  readonly top: readonly { readonly id: number; readonly logprob: number }[];
}

/**
 * log p(id) and the `top` most likely ids from logits [V], computed in float64.
 *
 * @example
 * ```ts
 * import { tokenLogprob } from "./logprobs.ts";
 * const lp = tokenLogprob(new Float32Array([0, Math.log(3)]), 0, 1);
 * if (Math.abs(lp.logprob - Math.log(0.25)) > 1e-6 || lp.top[0].id !== 1) throw new Error("wrong");
 * ```
 */
export function tokenLogprob(logits: ArrayLike<number>, id: number, top: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const logZ = max + Math.log(sum);
  const best: number[] = []; // ids, most likely first; insertion keeps it O(V·top)
  for (let i = 0; i < logits.length && top > 0; i++) {
    if (best.length === top && logits[i] <= logits[best[top - 1]]) continue;
    let j = Math.min(best.length, top - 1);
    while (j > 0 && logits[best[j - 1]] < logits[i]) j--;
    best.splice(j, 0, i);
    if (best.length > top) best.pop();
  }
  const lp = (i: number) => Math.max(FLOOR, logits[i] - logZ);
  return { id, logprob: lp(id), top: best.map((i) => ({ id: i, logprob: lp(i) })) };
}

/** How tokens are named: their text, or `token_id:ID` (vLLM's `return_tokens_as_token_ids`). */
export interface TokenNaming {
  readonly tokenizer: Tokenizer;
  readonly asIds: boolean;
}

/** The name of one token in logprobs. */
function tokenText({ tokenizer, asIds }: TokenNaming, id: number): string {
  if (asIds) return `token_id:${id}`;
  return id < tokenizer.vocabSize ? tokenizer.decode([id]) : "";
}

/** `/v1/completions` logprobs: parallel lists, and the alternatives (with the chosen token) as one object each. */
export function completionLogprobs(naming: TokenNaming, tokens: readonly TokenLogprob[], textOffset = 0): {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
} {
  const texts = tokens.map((t) => tokenText(naming, t.id));
  let offset = textOffset;
  return {
    tokens: texts,
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t, k) => {
      const entries: Record<string, number> = {};
      for (const alt of t.top) entries[tokenText(naming, alt.id)] = alt.logprob;
      entries[texts[k]] = t.logprob;
      return entries;
    }),
    text_offset: texts.map((text) => (offset += text.length) - text.length),
  };
}

/** `/v1/chat/completions` logprobs: one entry per token with its UTF-8 bytes and its alternatives. */
export function chatLogprobs(naming: TokenNaming, tokens: readonly TokenLogprob[]): {
  content: {
    token: string;
    logprob: number;
    bytes: number[];
    top_logprobs: { token: string; logprob: number; bytes: number[] }[];
  }[];
} {
  const entry = (id: number, logprob: number) => {
    const token = tokenText(naming, id);
    return { token, logprob, bytes: [...new TextEncoder().encode(token)] };
  };
  return {
    content: tokens.map((t) => ({
      ...entry(t.id, t.logprob),
      top_logprobs: t.top.map((alt) => entry(alt.id, alt.logprob)),
    })),
  };
}

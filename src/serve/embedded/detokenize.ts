/**
 * Incremental text of a generation, with stop strings.
 *
 * Decoding is incremental as in vLLM and Hugging Face's `TextStreamer`: each new token is decoded together with
 * the few tokens before it, and the text those few alone decode to is cut off, so the cost per token stays
 * constant and a SentencePiece tokenizer keeps the space a token carries (`Once upon` + `▁a` gives " a", not "a").
 * The first window starts with the last prompt tokens (vLLM's offset of 5). Text that ends in U+FFFD (half of a
 * multi-byte character) waits for the next token.
 *
 * With stop strings, the last `longest stop string − 1` characters are held back, as vLLM does, so a stop string
 * that is still being completed is never released; when one appears, the text ends just before it. The deltas
 * add up to the final text.
 *
 * @module
 */

import type { Tokenizer } from "../../model/tokenizer.ts";

/** Prompt tokens decoded before the output (vLLM's initial incremental detokenization offset). */
const CONTEXT_TOKENS = 5;

/**
 * Turns generated ids into text deltas and watches for stop strings.
 *
 * @example
 * ```ts
 * import { Detokenizer } from "./detokenize.ts";
 * const words = ["a", "b", "STOP", "c"];
 * const tokenizer = { decode: (ids: readonly number[]) => ids.map((i) => words[i]).join(" "), vocabSize: 4 };
 * const d = new Detokenizer(tokenizer, ["STOP"]);
 * const streamed = [0, 1, 2].map((id) => d.push(id)).join("") + d.finish();
 * if (streamed !== "a b " || d.text !== "a b " || d.stopString !== "STOP") throw new Error(streamed);
 * ```
 */
export class Detokenizer {
  /** Context and output ids the tokenizer knows (a model's vocabulary may be padded past it). */
  readonly #ids: number[];
  /** The window decoded for the next token is `#ids[#prefix..]`; `#ids[#prefix..#read]` is already text. */
  #prefix = 0;
  #read: number;
  #text = "";
  #emitted = 0;
  #ended = false;
  #stopString: string | null = null;
  readonly #holdBack: number;

  constructor(
    readonly tokenizer: Pick<Tokenizer, "decode" | "vocabSize">,
    readonly stop: readonly string[] = [],
    prompt: readonly number[] = [],
  ) {
    this.#holdBack = Math.max(0, ...stop.map((s) => s.length - 1));
    this.#ids = prompt.slice(-CONTEXT_TOKENS).filter((id) => id < tokenizer.vocabSize);
    this.#read = this.#ids.length;
  }

  /** The stop string that ended the text, or null. */
  get stopString(): string | null {
    return this.#stopString;
  }

  /** The text so far; the final text after {@link finish} or once a stop string matched. */
  get text(): string {
    return this.#text;
  }

  /** Adds a token; returns the text that became certain. After the text ended, nothing more is added. */
  push(id: number): string {
    if (this.#ended) return "";
    if (id >= this.tokenizer.vocabSize) return "";
    this.#ids.push(id);
    const before = this.#text.length;
    const [prefixText, windowText] = this.#window();
    if (windowText.length > prefixText.length && !windowText.endsWith("\uFFFD")) {
      this.#text += windowText.slice(prefixText.length);
      this.#prefix = this.#read;
      this.#read = this.#ids.length;
    }
    let at = -1;
    for (const s of this.stop) {
      const i = s === "" ? -1 : this.#text.indexOf(s, Math.max(0, before - s.length + 1));
      if (i >= 0 && (at < 0 || i < at)) [at, this.#stopString] = [i, s];
    }
    if (at >= 0) {
      this.#text = this.#text.slice(0, at);
      this.#ended = true;
      return this.#release(this.#text.length);
    }
    return this.#release(this.#text.length - this.#holdBack);
  }

  /** Ends the text (with any half character still waiting); returns whatever was held back. */
  finish(): string {
    if (!this.#ended) {
      const [prefixText, windowText] = this.#window();
      if (windowText.length > prefixText.length) this.#text += windowText.slice(prefixText.length);
      this.#ended = true;
    }
    return this.#release(this.#text.length);
  }

  /** The text of the window's old part, and of the whole window. */
  #window(): [string, string] {
    const decode = (ids: number[]) => this.tokenizer.decode(ids, { skipSpecialTokens: true });
    return [decode(this.#ids.slice(this.#prefix, this.#read)), decode(this.#ids.slice(this.#prefix))];
  }

  /** Releases the text up to `end`, past what was released before. */
  #release(end: number): string {
    if (end <= this.#emitted) return "";
    const delta = this.#text.slice(this.#emitted, end);
    this.#emitted = end;
    return delta;
  }
}

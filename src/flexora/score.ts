/**
 * Scoring with the scoring graph: multiple choice by the summed log-likelihood of each choice given the prompt,
 * and mean negative log-likelihood (perplexity) of completions.
 *
 * A choice is tokenized with its prompt as one string; its tokens are those after the prompt's own tokens.
 *
 * @module
 */

import { DeviceTensor, type HostTensor, type Session, type Tensor } from "../runtime/session.ts";
import { batchFeeds, type Sequence } from "../data/sequence.ts";
import type { Tokenizer } from "../model/tokenizer.ts";

/** A multiple-choice row. */
export interface ChoiceRow {
  readonly prompt: string;
  readonly choices: readonly string[];
  /** Index of the correct choice, when known. */
  readonly label?: number;
}

/** A completion row. */
export interface CompletionRow {
  readonly prompt: string;
  readonly completion: string;
}

/** Scores of one multiple-choice row. */
export interface ChoiceScore {
  readonly logprobs: number[];
  readonly pred: number;
}

/** Options of a {@link Scorer}. */
export interface ScorerOptions {
  /** Sequences per run (default 16). */
  batchSize?: number;
  /** Extra inputs of the scoring graph: LoRA weights and gate logits. */
  adapterInputs?: Readonly<Record<string, HostTensor>>;
}

/** Scores rows with a scoring-graph session. */
export class Scorer {
  readonly #session: Session;
  readonly #tokenizer: Tokenizer;
  readonly #options: ScorerOptions;

  constructor(session: Session, tokenizer: Tokenizer, options: ScorerOptions = {}) {
    this.#session = session;
    this.#tokenizer = tokenizer;
    this.#options = options;
  }

  /** The prompt's tokens and the continuation's tokens after them. */
  #sequence(prompt: string, continuation: string): Sequence {
    const promptIds = this.#tokenizer.encode(prompt);
    const ids = this.#tokenizer.encode(prompt + continuation);
    if (ids.length <= promptIds.length) {
      throw new Error(`continuation ${JSON.stringify(continuation)} adds no tokens to its prompt`);
    }
    return { ids, targetFrom: promptIds.length };
  }

  /**
   * Summed log-likelihood of each sequence's targets, and how many targets each has. The adapter's inputs are
   * placed where the session reads them once per call ({@link Session.resident}: on the device for WebGPU), not
   * with every batch, and freed at the end.
   */
  async #logLikelihoods(seqs: readonly Sequence[]): Promise<{ sum: number; count: number }[]> {
    const host = this.#options.adapterInputs ?? {};
    const adapter = Object.keys(host).length ? await this.#session.resident(host) : {};
    try {
      return await this.#batches(seqs, adapter);
    } finally {
      for (const t of Object.values(adapter)) if (t instanceof DeviceTensor) t.dispose();
    }
  }

  async #batches(
    seqs: readonly Sequence[],
    adapter: Readonly<Record<string, Tensor>>,
  ): Promise<{ sum: number; count: number }[]> {
    const size = this.#options.batchSize ?? 16;
    const order = [...seqs.keys()].sort((a, b) => seqs[a].ids.length - seqs[b].ids.length);
    const out = new Array<{ sum: number; count: number }>(seqs.length);
    for (let i = 0; i < order.length; i += size) {
      const chunk = order.slice(i, i + size);
      const { labels, ...feeds } = batchFeeds(chunk.map((k) => seqs[k]), this.#tokenizer.padTokenId ?? 0);
      const result = await this.#session.run({ ...feeds, ...adapter, targets: labels }, ["token_logprobs"]);
      const lp = result.token_logprobs.data as Float32Array;
      const T = labels.dims[1], targets = labels.data as BigInt64Array;
      chunk.forEach((k, b) => {
        let sum = 0, count = 0;
        for (let t = 0; t < T; t++) {
          if (targets[b * T + t] < 0n) continue;
          sum += lp[b * T + t];
          count++;
        }
        out[k] = { sum, count };
      });
    }
    return out;
  }

  /** Scores each row's choices; accuracy over rows that have a label. */
  async multipleChoice(
    rows: readonly ChoiceRow[],
  ): Promise<{ rows: ChoiceScore[]; accuracy: number; n: number }> {
    const seqs = rows.flatMap((r) => r.choices.map((c) => this.#sequence(r.prompt, c)));
    const ll = await this.#logLikelihoods(seqs);
    let k = 0, correct = 0, labelled = 0;
    const scored = rows.map((r) => {
      const logprobs = r.choices.map(() => ll[k++].sum);
      const pred = logprobs.indexOf(Math.max(...logprobs));
      if (r.label !== undefined) {
        labelled++;
        if (pred === r.label) correct++;
      }
      return { logprobs, pred };
    });
    return { rows: scored, accuracy: labelled ? correct / labelled : NaN, n: rows.length };
  }

  /** Mean negative log-likelihood per completion token, and its perplexity. */
  async completions(
    rows: readonly CompletionRow[],
  ): Promise<{ nll: number; perplexity: number; tokens: number }> {
    const ll = await this.#logLikelihoods(rows.map((r) => this.#sequence(r.prompt, r.completion)));
    const tokens = ll.reduce((s, x) => s + x.count, 0);
    const nll = -ll.reduce((s, x) => s + x.sum, 0) / tokens;
    return { nll, perplexity: Math.exp(nll), tokens };
  }
}

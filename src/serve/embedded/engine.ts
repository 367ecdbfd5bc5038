/**
 * Generation for the server: the engine's {@link generate} on a pooled session, with each model step queued on the
 * server's one {@link SerialQueue}, stop strings, log-probabilities and cancellation.
 *
 * `generate` takes a session and calls only its `runOnDevice`, once per step (and `resident`, once, for an
 * adapter's weights), and reports nothing but each new id. So each request hands it a view of the pooled session
 * whose `runOnDevice` (1) waits its turn in the queue, (2) refuses to start once the request is cancelled or a stop
 * string matched, and (3) keeps the step's logits for the log-probabilities of the token `onToken` then reports.
 *
 * @module
 */

import { generate } from "../../model/generate.ts";
import type { Model } from "../../model/model.ts";
import type { HostTensor, Session, Tensor } from "../../runtime/session.ts";
import { Detokenizer } from "./detokenize.ts";
import { type TokenLogprob, tokenLogprob } from "./logprobs.ts";
import type { SerialQueue } from "./queue.ts";
import type { LoadedAdapter } from "./registry.ts";
import type { SessionPool } from "./sessions.ts";

/** How to sample, resolved from a request. */
export interface Sampling {
  readonly maxTokens: number;
  /** 0: greedy. */
  readonly temperature: number;
  readonly topP: number;
  readonly seed: number;
  readonly stop: readonly string[];
  /** Ids that end generation besides EOS (vLLM's `stop_token_ids`). */
  readonly stopTokenIds: readonly number[];
  /** Do not stop at the model's EOS (vLLM's `ignore_eos`). */
  readonly ignoreEos: boolean;
  /** Alternatives per token to report; null: no log-probabilities. */
  readonly logprobs: number | null;
}

/** One generation. */
export interface GenerationRequest {
  readonly prompt: readonly number[];
  /** The adapter the request captured; null: the base model. */
  readonly adapter: LoadedAdapter | null;
  readonly sampling: Sampling;
  readonly signal?: AbortSignal;
}

/** A token as it is generated: the text it made certain, and its log-probability when asked for. */
export interface TokenEvent {
  readonly id: number;
  readonly text: string;
  readonly logprob: TokenLogprob | null;
}

/** A finished generation. */
export interface GenerationResult {
  readonly ids: readonly number[];
  readonly text: string;
  /** Text not yet delivered through {@link TokenEvent}s (held back for stop strings). */
  readonly tail: string;
  readonly finishReason: "stop" | "length";
  /** The stop string that ended the text, or null. */
  readonly stopReason: string | null;
  readonly logprobs: readonly TokenLogprob[] | null;
  readonly promptTokens: number;
  /** Generated tokens, counting the stop token that ended generation (as vLLM and OpenAI count). */
  readonly completionTokens: number;
}

/** Raised inside a step to end generation at a stop string; never escapes {@link Engine.generate}. */
const STOPPED = new Error("stop string matched");

/** Generates on pooled sessions, one queued step at a time. */
export class Engine {
  readonly #shutdown = new AbortController();
  readonly #active = new Set<Promise<unknown>>();

  constructor(readonly model: Model, readonly pool: SessionPool, readonly queue: SerialQueue) {}

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#shutdown.signal.aborted;
  }

  /** Generates for `request`, reporting each token to `onToken`; rejects when the request's signal fires. */
  generate(request: GenerationRequest, onToken?: (e: TokenEvent) => void): Promise<GenerationResult> {
    const run = this.#generate(request, onToken);
    this.#active.add(run);
    return run.finally(() => this.#active.delete(run));
  }

  /** Cancels running generations, waits for them to end, and releases every session. */
  async close(): Promise<void> {
    this.#shutdown.abort(new Error("the server is shutting down"));
    await Promise.allSettled([...this.#active]);
    await this.pool.close();
  }

  async #generate(request: GenerationRequest, onToken?: (e: TokenEvent) => void): Promise<GenerationResult> {
    const { model } = this;
    const { prompt, adapter, sampling: s } = request;
    const stopper = new AbortController();
    const signal = AbortSignal.any(
      [this.#shutdown.signal, stopper.signal, request.signal].filter((x) => x !== undefined),
    );
    signal.throwIfAborted();
    const lease = await this.pool.acquire(adapter?.config ?? null);
    let logits: ArrayLike<number> = [];
    const session = this.#stepped(lease.session, signal, (l) => logits = l);
    const detokenizer = new Detokenizer(model.tokenizer, s.stop, prompt);
    const ids: number[] = [], logprobs: TokenLogprob[] = [];
    const eos = s.ignoreEos ? [] : [...model.config.eosTokenIds, model.tokenizer.eosTokenId ?? -1];
    try {
      await generate(session, model.config, prompt, {
        maxTokens: s.maxTokens,
        greedy: s.temperature === 0,
        temperature: s.temperature === 0 ? undefined : s.temperature,
        topP: s.topP,
        seed: s.seed,
        stop: [...eos, ...s.stopTokenIds],
        adapterInputs: adapter?.inputs,
        onToken: (id) => {
          ids.push(id);
          const logprob = s.logprobs === null ? null : tokenLogprob(logits, id, s.logprobs);
          if (logprob) logprobs.push(logprob);
          const text = detokenizer.push(id);
          if (detokenizer.stopString !== null) stopper.abort(STOPPED);
          onToken?.({ id, text, logprob });
        },
      });
    } catch (e) {
      if (e !== STOPPED) throw e;
    } finally {
      lease.release();
    }
    const tail = detokenizer.finish();
    const stoppedByToken = ids.length < s.maxTokens && detokenizer.stopString === null;
    return {
      ids,
      text: detokenizer.text,
      tail,
      finishReason: stoppedByToken || detokenizer.stopString !== null ? "stop" : "length",
      stopReason: detokenizer.stopString,
      logprobs: s.logprobs === null ? null : logprobs,
      promptTokens: prompt.length,
      completionTokens: ids.length + (stoppedByToken ? 1 : 0),
    };
  }

  /** A view of `inner` whose runs are queued, cancellable and report their logits (see the module doc). */
  #stepped(
    inner: Session,
    signal: AbortSignal,
    onLogits: (logits: ArrayLike<number>) => void,
  ): Pick<Session, "runOnDevice" | "resident"> {
    const runOnDevice = (feeds: Readonly<Record<string, Tensor>>, fetches?: string[]) =>
      this.queue.run(async () => {
        signal.throwIfAborted();
        const out = await inner.runOnDevice(feeds, fetches);
        onLogits((out.logits as HostTensor).data as Float32Array); // logits come back to the host
        return out;
      });
    // The adapter's weights go to the device once per request (on WebGPU), queued like a step.
    const resident = (tensors: Readonly<Record<string, HostTensor>>) =>
      this.queue.run(() => inner.resident(tensors));
    return { runOnDevice, resident };
  }
}

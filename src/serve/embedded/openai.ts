/**
 * OpenAI's response shapes for completions and chat completions, whole and as stream chunks.
 *
 * A response is `{id, object, created, model, choices, usage}`; a choice has `index`, `text` (completions) or
 * `message` (chat), `logprobs`, `finish_reason` ("stop" or "length") and vLLM's `stop_reason` (the stop string
 * that matched, else null). Chunks carry `text` or `delta` instead; the last one has the finish reason, and with
 * `stream_options.include_usage` one more chunk with no choices carries the usage.
 *
 * @module
 */

import type { GenerationResult } from "./engine.ts";
import { chatLogprobs, completionLogprobs, type TokenLogprob, type TokenNaming } from "./logprobs.ts";

/** What every response and chunk of one request shares. */
export interface ResponseMeta {
  readonly id: string;
  readonly created: number;
  readonly model: string;
}

/** The end of a choice, for its last chunk. */
export interface Finish {
  readonly reason: "stop" | "length";
  readonly stopReason: string | null;
}

/** How one endpoint shapes its responses. */
export interface ResponseFormat {
  /** Prefix of response ids: `cmpl` or `chatcmpl`. */
  readonly idPrefix: string;
  /** The whole response. */
  body(meta: ResponseMeta, result: GenerationResult): Record<string, unknown>;
  /** Chunks sent before any token (chat: the assistant role). */
  opening(meta: ResponseMeta): Record<string, unknown>[];
  /** A chunk of `text` starting at character `offset` of the output, with its tokens' log-probabilities. */
  chunk(
    meta: ResponseMeta,
    text: string,
    logprobs: readonly TokenLogprob[] | null,
    offset: number,
    finish: Finish | null,
  ): Record<string, unknown>;
  /** The usage chunk of `stream_options.include_usage`. */
  usageChunk(meta: ResponseMeta, result: GenerationResult): Record<string, unknown>;
}

/** A fresh id and timestamp for a response. */
export function responseMeta(format: ResponseFormat, model: string): ResponseMeta {
  const id = `${format.idPrefix}-${crypto.randomUUID().replaceAll("-", "")}`;
  return { id, created: Math.floor(Date.now() / 1000), model };
}

/** Token counts. */
export function usage(r: GenerationResult): Record<string, number> {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
  };
}

function envelope(
  meta: ResponseMeta,
  object: string,
  rest: Record<string, unknown>,
): Record<string, unknown> {
  return { id: meta.id, object, created: meta.created, model: meta.model, ...rest };
}

/** `/v1/completions`: `object` "text_completion" for the response and for chunks. */
export function completionFormat(naming: TokenNaming): ResponseFormat {
  const logprobs = (tokens: readonly TokenLogprob[] | null, offset: number) =>
    tokens === null ? null : completionLogprobs(naming, tokens, offset);
  return {
    idPrefix: "cmpl",
    body: (meta, r) =>
      envelope(meta, "text_completion", {
        choices: [{
          index: 0,
          text: r.text,
          logprobs: logprobs(r.logprobs, 0),
          finish_reason: r.finishReason,
          stop_reason: r.stopReason,
        }],
        usage: usage(r),
      }),
    opening: () => [],
    chunk: (meta, text, tokens, offset, finish) =>
      envelope(meta, "text_completion", {
        choices: [{
          index: 0,
          text,
          logprobs: logprobs(tokens, offset),
          finish_reason: finish?.reason ?? null,
          stop_reason: finish?.stopReason ?? null,
        }],
      }),
    usageChunk: (meta, r) => envelope(meta, "text_completion", { choices: [], usage: usage(r) }),
  };
}

/** `/v1/chat/completions`: "chat.completion", and "chat.completion.chunk" for chunks. */
export function chatFormat(naming: TokenNaming): ResponseFormat {
  const logprobs = (tokens: readonly TokenLogprob[] | null) =>
    tokens === null ? null : chatLogprobs(naming, tokens);
  const chunk = (meta: ResponseMeta, delta: Record<string, unknown>, rest: Record<string, unknown>) =>
    envelope(meta, "chat.completion.chunk", { choices: [{ index: 0, delta, ...rest }] });
  return {
    idPrefix: "chatcmpl",
    body: (meta, r) =>
      envelope(meta, "chat.completion", {
        choices: [{
          index: 0,
          message: { role: "assistant", content: r.text },
          logprobs: logprobs(r.logprobs),
          finish_reason: r.finishReason,
          stop_reason: r.stopReason,
        }],
        usage: usage(r),
      }),
    opening: (
      meta,
    ) => [chunk(meta, { role: "assistant", content: "" }, { logprobs: null, finish_reason: null })],
    chunk: (meta, text, tokens, _offset, finish) =>
      chunk(meta, finish && text === "" ? {} : { content: text }, {
        logprobs: logprobs(tokens),
        finish_reason: finish?.reason ?? null,
        stop_reason: finish?.stopReason ?? null,
      }),
    usageChunk: (meta, r) => envelope(meta, "chat.completion.chunk", { choices: [], usage: usage(r) }),
  };
}

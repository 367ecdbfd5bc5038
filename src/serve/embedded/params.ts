/**
 * The sampling fields of OpenAI completion and chat requests, checked and resolved with vLLM's defaults:
 * `max_tokens` 16 for completions and the rest of the context for chat, `temperature` 1.0 (0 means greedy),
 * `top_p` 1, a random `seed` when none is given, `stop` strings, and vLLM's `stop_token_ids` and `ignore_eos`.
 * `logprobs` is an integer for completions; chat asks with `logprobs: true` and `top_logprobs`; vLLM's
 * `return_tokens_as_token_ids` names logprob tokens `token_id:ID`.
 *
 * Fields that would change the result in ways this server cannot honour (`n` > 1, `best_of`, `echo`, `suffix`,
 * beam search, top-k, min-p and the penalties) are a 400 naming the field, rather than silently ignored; other
 * unknown fields are ignored, as vLLM does.
 *
 * @module
 */

import type { Sampling } from "./engine.ts";
import { ApiError } from "./errors.ts";
import { MAX_TOP_LOGPROBS } from "./logprobs.ts";

/** A request's sampling, whether it streams, and `max_tokens` when given (null: fill the context). */
export interface SamplingRequest {
  readonly sampling: Omit<Sampling, "maxTokens">;
  readonly maxTokens: number | null;
  readonly stream: boolean;
  /** `stream_options.include_usage`: a last chunk with the token counts. */
  readonly includeUsage: boolean;
  /** vLLM's `return_tokens_as_token_ids`: logprobs name tokens `token_id:ID`. */
  readonly tokensAsIds: boolean;
}

type Body = Record<string, unknown>;

/** A number field, or undefined when absent or null; 400 naming the field when out of range. */
function numberField(
  body: Body,
  name: string,
  check: { integer?: boolean; min?: number; max?: number; above?: number } = {},
): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  const range = [
    check.integer ? "an integer" : "a number",
    check.min !== undefined ? `>= ${check.min}` : "",
    check.above !== undefined ? `> ${check.above}` : "",
    check.max !== undefined ? `<= ${check.max}` : "",
  ].filter(Boolean).join(" ");
  if (
    typeof v !== "number" || !Number.isFinite(v) || (check.integer && !Number.isInteger(v)) ||
    (check.min !== undefined && v < check.min) || (check.max !== undefined && v > check.max) ||
    (check.above !== undefined && v <= check.above)
  ) {
    throw ApiError.badRequest(`'${name}' must be ${range}, got ${JSON.stringify(v)}`, name);
  }
  return v;
}

/** A boolean field (default false). */
function booleanField(body: Body, name: string): boolean {
  const v = body[name];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") {
    throw ApiError.badRequest(`'${name}' must be a boolean, got ${JSON.stringify(v)}`, name);
  }
  return v;
}

/** `stop`: a string or a list of strings. */
function stopField(body: Body): string[] {
  const v = body.stop;
  if (v === undefined || v === null) return [];
  if (typeof v === "string") return [v];
  if (Array.isArray(v) && v.every((s) => typeof s === "string")) return v;
  throw ApiError.badRequest(`'stop' must be a string or a list of strings, got ${JSON.stringify(v)}`, "stop");
}

/** Ids of a list field, each in [0, vocabSize). */
export function idsField(value: unknown, name: string, vocabSize: number): number[] {
  if (!Array.isArray(value)) throw ApiError.badRequest(`'${name}' must be a list of token ids`, name);
  const bad = value.find((id) => !(Number.isInteger(id) && id >= 0 && id < vocabSize));
  if (bad !== undefined) {
    throw ApiError.badRequest(
      `'${name}' has ${JSON.stringify(bad)}; token ids must be integers in 0..${vocabSize - 1}`,
      name,
    );
  }
  return value;
}

/** Rejects fields set to values this server cannot honour. */
function rejectUnsupported(body: Body): void {
  const neutral: Record<string, unknown[]> = {
    n: [1],
    best_of: [1],
    echo: [false],
    suffix: [""],
    use_beam_search: [false],
    top_k: [-1, 0],
    min_p: [0],
    presence_penalty: [0],
    frequency_penalty: [0],
    repetition_penalty: [1],
  };
  for (const [name, ok] of Object.entries(neutral)) {
    const v = body[name];
    if (v !== undefined && v !== null && !ok.includes(v)) {
      throw ApiError.badRequest(
        `'${name}' is not supported by this server (only ${
          ok.map((x) => JSON.stringify(x)).join(" or ")
        }), got ${JSON.stringify(v)}`,
        name,
      );
    }
  }
}

/** Reads the sampling fields of a `/v1/completions` or `/v1/chat/completions` body. */
export function parseSampling(body: Body, kind: "completion" | "chat", vocabSize: number): SamplingRequest {
  rejectUnsupported(body);
  const maxTokens =
    (kind === "chat" ? numberField(body, "max_completion_tokens", { integer: true, min: 1 }) : undefined) ??
      numberField(body, "max_tokens", { integer: true, min: 1 }) ?? (kind === "completion" ? 16 : null);
  let logprobs: number | null;
  if (kind === "completion") {
    logprobs = numberField(body, "logprobs", { integer: true, min: 0, max: MAX_TOP_LOGPROBS }) ?? null;
  } else {
    const top = numberField(body, "top_logprobs", { integer: true, min: 0, max: MAX_TOP_LOGPROBS });
    const wanted = booleanField(body, "logprobs");
    if (top !== undefined && top > 0 && !wanted) {
      throw ApiError.badRequest("'top_logprobs' needs 'logprobs' set to true", "top_logprobs");
    }
    logprobs = wanted ? top ?? 0 : null;
  }
  const options = body.stream_options;
  const includeUsage = typeof options === "object" && options !== null &&
    (options as Body).include_usage === true;
  return {
    maxTokens,
    stream: booleanField(body, "stream"),
    includeUsage,
    tokensAsIds: booleanField(body, "return_tokens_as_token_ids"),
    sampling: {
      temperature: numberField(body, "temperature", { min: 0 }) ?? 1,
      topP: numberField(body, "top_p", { above: 0, max: 1 }) ?? 1,
      seed: numberField(body, "seed", { integer: true }) ?? Math.floor(Math.random() * 2 ** 32),
      stop: stopField(body),
      stopTokenIds: body.stop_token_ids == null
        ? []
        : idsField(body.stop_token_ids, "stop_token_ids", vocabSize),
      ignoreEos: booleanField(body, "ignore_eos"),
      logprobs,
    },
  };
}

/** The completion length: `max_tokens`, or what is left of the context; 400 with vLLM's message when too long. */
export function resolveMaxTokens(
  requested: number | null,
  promptTokens: number,
  contextLength: number,
): number {
  if (requested === null) {
    if (promptTokens < contextLength) return contextLength - promptTokens;
    throw ApiError.badRequest(
      `This model's maximum context length is ${contextLength} tokens. However, your request has ${promptTokens} input tokens. Please reduce the length of the input messages.`,
    );
  }
  if (promptTokens + requested <= contextLength) return requested;
  throw ApiError.badRequest(
    `This model's maximum context length is ${contextLength} tokens. However, you requested ${
      promptTokens + requested
    } tokens (${promptTokens} in the messages, ${requested} in the completion). Please reduce the length of the messages or completion.`,
  );
}

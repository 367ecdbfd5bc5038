/**
 * Verification shared by the plugins: a short greedy probe run with the adapter and with the base model, and the
 * attach result built from it. An adapter whose tensor names do not match the model loads fine and does nothing,
 * so "loaded" is not enough: the outputs must differ.
 *
 * @module
 */

import type { ServerClient } from "./http.ts";
import {
  type AdapterRef,
  AttachError,
  type AttachResult,
  type CallContext,
  type ServerConfig,
  type Verification,
} from "./types.ts";
import { attaching } from "./errors.ts";

/** Prompt of the probe when {@link CallContext.probePrompt} is not given. */
export const DEFAULT_PROBE_PROMPT = "The quick brown fox";
/** Tokens each probe generates (greedy: temperature 0). */
export const PROBE_TOKENS = 8;
/**
 * Two probes whose texts are equal still differ when a token's log-probability moved by more than this. Kernels
 * with and without a LoRA branch may differ in the last bits; a trained adapter moves log-probabilities by far
 * more than 1e-3.
 */
export const LOGPROB_TOLERANCE = 1e-3;

/** What one probe produced: the text and, where the server gives them, the generated tokens' log-probabilities. */
export interface ProbeOutput {
  readonly text: string;
  readonly logprobs: readonly number[];
}

/** The probe prompt of a call. */
export function probePrompt(ctx: CallContext): string {
  return ctx.probePrompt ?? DEFAULT_PROBE_PROMPT;
}

/**
 * True when the adapter's probe differs from the base's: another text, or a log-probability that moved by more
 * than {@link LOGPROB_TOLERANCE}.
 *
 * @example
 * ```ts
 * import { outputsDiffer } from "./verify.ts";
 * const base = { text: " jumps over", logprobs: [-0.5, -1.25] };
 * if (outputsDiffer(base, { ...base })) throw new Error("same output");
 * if (!outputsDiffer(base, { text: " jumps over", logprobs: [-0.5, -0.75] })) throw new Error("moved");
 * ```
 */
export function outputsDiffer(adapter: ProbeOutput, base: ProbeOutput): boolean {
  if (adapter.text !== base.text || adapter.logprobs.length !== base.logprobs.length) return true;
  return adapter.logprobs.some((lp, i) => !(Math.abs(lp - base.logprobs[i]) <= LOGPROB_TOLERANCE));
}

/** `changesOutput` and a sentence saying what the probes gave. */
export function compareProbes(
  prompt: string,
  adapter: ProbeOutput,
  base: ProbeOutput,
): { changesOutput: boolean; detail: string } {
  const changesOutput = outputsDiffer(adapter, base);
  const said = `probe ${JSON.stringify(prompt)}: adapter ${JSON.stringify(adapter.text)}, base ${
    JSON.stringify(base.text)
  }`;
  return {
    changesOutput,
    detail: changesOutput
      ? said
      : `${said}: the adapter does not change the output (do its tensor names match the model?)`,
  };
}

/**
 * The result of an attach whose verification is `v`; an adapter the server does not list after loading is an
 * {@link AttachError}. Whether an unchanged output is acceptable is the caller's decision.
 */
export function attachResult(
  server: ServerConfig,
  adapter: AdapterRef,
  v: Verification,
  client: ServerClient,
  started: number,
): AttachResult {
  if (!v.listed) {
    throw new AttachError(
      `${attaching(server, adapter.name)}: the server accepted it but does not list it (${v.detail})`,
    );
  }
  return {
    server: server.name,
    adapter: adapter.name,
    verification: v,
    attempts: client.attempts,
    millis: Math.round(performance.now() - started),
  };
}

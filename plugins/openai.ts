/**
 * The OpenAI-compatible completion route (`POST /v1/completions`) that vLLM and SGLang share, used for probes.
 *
 * @module
 */

import { isRecord, type ServerClient, unexpectedAnswer } from "./http.ts";
import { PROBE_TOKENS, type ProbeOutput } from "./verify.ts";

/**
 * A greedy completion of `prompt` by `model` (a base model or an adapter, in the server's spelling), with the
 * generated tokens' log-probabilities (`logprobs: 1`).
 */
export async function complete(client: ServerClient, model: string, prompt: string): Promise<ProbeOutput> {
  const body = await client.json("POST", "/v1/completions", {
    model,
    prompt,
    max_tokens: PROBE_TOKENS,
    temperature: 0,
    logprobs: 1,
  });
  const choice = isRecord(body) && Array.isArray(body.choices) ? body.choices[0] : undefined;
  if (!isRecord(choice) || typeof choice.text !== "string") {
    throw unexpectedAnswer("POST /v1/completions", body);
  }
  const lp = isRecord(choice.logprobs) ? choice.logprobs.token_logprobs : undefined;
  return {
    text: choice.text,
    logprobs: Array.isArray(lp) ? lp.filter((x): x is number => typeof x === "number") : [],
  };
}

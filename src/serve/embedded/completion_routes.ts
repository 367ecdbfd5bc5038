/**
 * `POST /v1/completions` and `POST /v1/chat/completions`, whole or streamed as server-sent events
 * (`data: {chunk}` lines ending with `data: [DONE]`). `model` names the base model (its served name; absent also
 * means the base) or a loaded adapter; anything else is vLLM's 404. An error after streaming began is sent as
 * one `data: {"error": ...}` event before `[DONE]`, as vLLM does.
 *
 * A stream whose client goes away stops generating at the next step. A non-streaming request runs to the end:
 * Deno's `request.signal` also fires after every successful response (its legacy behaviour), so it is not used.
 *
 * @module
 */

import { type Context, Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { Model } from "../../model/model.ts";
import type { Engine, GenerationRequest } from "./engine.ts";
import { ApiError, readJsonObject } from "./errors.ts";
import type { TokenNaming } from "./logprobs.ts";
import { chatFormat, completionFormat, type ResponseFormat, responseMeta } from "./openai.ts";
import { parseSampling, resolveMaxTokens } from "./params.ts";
import { chatMessages, chatPrompt, completionPrompt } from "./prompt.ts";
import type { AdapterRegistry, LoadedAdapter } from "./registry.ts";

/** What the completion routes need. */
export interface CompletionDeps {
  readonly model: Model;
  readonly servedName: string;
  readonly registry: AdapterRegistry;
  readonly engine: Engine;
}

/** The two completion endpoints. */
export function completionRoutes(deps: CompletionDeps): Hono {
  const { tokenizer, config } = deps.model;
  const completion = (body: Record<string, unknown>) =>
    completionPrompt(tokenizer, config.vocabSize, body.prompt);
  const chat = (body: Record<string, unknown>) => chatPrompt(tokenizer, chatMessages(body.messages));
  return new Hono()
    .post("/v1/completions", (c) => respond(c, deps, completionFormat, "completion", completion))
    .post("/v1/chat/completions", (c) => respond(c, deps, chatFormat, "chat", chat));
}

/** The adapter `model` names (null: the base model) and the name responses carry. */
function resolveModel(deps: CompletionDeps, model: unknown): { adapter: LoadedAdapter | null; name: string } {
  if (model === undefined || model === null || model === deps.servedName) {
    return { adapter: null, name: deps.servedName };
  }
  if (typeof model !== "string") {
    throw ApiError.badRequest(`'model' must be a string, got ${JSON.stringify(model)}`, "model");
  }
  const adapter = deps.registry.get(model);
  if (!adapter) throw ApiError.notFound(`The model \`${model}\` does not exist.`, "model");
  return { adapter, name: model };
}

async function respond(
  c: Context,
  deps: CompletionDeps,
  makeFormat: (naming: TokenNaming) => ResponseFormat,
  kind: "completion" | "chat",
  prompt: (body: Record<string, unknown>) => number[],
): Promise<Response> {
  const body = await readJsonObject(c);
  const { adapter, name } = resolveModel(deps, body.model);
  const params = parseSampling(body, kind, deps.model.config.vocabSize);
  const ids = prompt(body);
  const maxTokens = resolveMaxTokens(params.maxTokens, ids.length, deps.model.config.maxPositionEmbeddings);
  const request: GenerationRequest = {
    prompt: ids,
    adapter, // captured now: loading in place later does not change what this request runs with
    sampling: { ...params.sampling, maxTokens },
  };
  const format = makeFormat({ tokenizer: deps.model.tokenizer, asIds: params.tokensAsIds });
  const meta = responseMeta(format, name);
  if (!params.stream) return c.json(format.body(meta, await deps.engine.generate(request)));

  return streamSSE(c, async (stream) => {
    const gone = new AbortController();
    stream.onAbort(() => gone.abort(new Error("the client closed the stream")));
    let writes = Promise.resolve();
    const send = (data: unknown) =>
      writes = writes.then(() =>
        stream.writeSSE({ data: typeof data === "string" ? data : JSON.stringify(data) })
      );
    for (const chunk of format.opening(meta)) send(chunk);
    let offset = 0;
    try {
      const result = await deps.engine.generate({ ...request, signal: gone.signal }, (e) => {
        if (e.text === "" && e.logprob === null) return;
        send(format.chunk(meta, e.text, e.logprob && [e.logprob], offset, null));
        offset += e.text.length;
      });
      send(format.chunk(meta, result.tail, null, offset, {
        reason: result.finishReason,
        stopReason: result.stopReason,
      }));
      if (params.includeUsage) send(format.usageChunk(meta, result));
    } catch (e) {
      if (gone.signal.aborted) return;
      const error = e instanceof ApiError
        ? e
        : new ApiError(500, `internal error: ${(e as Error).message}`, "InternalServerError");
      send(error.body());
    }
    send("[DONE]");
    await writes;
  });
}

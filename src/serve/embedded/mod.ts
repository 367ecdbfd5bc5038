/**
 * The embedded inference server: OpenAI-compatible completions and chat on flexora's engine, with vLLM's runtime
 * LoRA routes. See {@link ./app.ts}.
 *
 * @module
 */

export { createEmbeddedApp, type EmbeddedOptions, type EmbeddedServer } from "./app.ts";
export { ApiError, type ApiErrorType, type ErrorBody } from "./errors.ts";
export { plainChatTemplate } from "./prompt.ts";

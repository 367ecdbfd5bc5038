/**
 * Prompts of OpenAI requests as token ids.
 *
 * `/v1/completions` takes `prompt` as a string, a list of one string, a list of token ids, or a list of one list of
 * ids; a string is encoded with the tokenizer's special tokens (BOS), as vLLM does. Batches of several prompts are
 * a 400: send one request per prompt.
 *
 * `/v1/chat/completions` renders `messages` with the tokenizer's chat template and a generation prompt, then
 * encodes the text without adding special tokens (templates write their own BOS). A message's `content` is a
 * string, null, or a list of `{type: "text", text}` parts, which are joined.
 *
 * **Fallback template.** When the tokenizer has no chat template, messages are rendered as one line each,
 * `role: content`, followed by `assistant:` as the generation prompt, and that text is encoded with special tokens
 * (so BOS comes first):
 *
 * ```
 * system: You are terse.
 * user: What color is the sky?
 * assistant:
 * ```
 *
 * @module
 */

import type { Tokenizer } from "../../model/tokenizer.ts";
import { TokenizerError } from "../../model/tokenizer.ts";
import { ApiError } from "./errors.ts";
import { idsField } from "./params.ts";

/** A chat message after validation. */
export interface ChatMessage {
  readonly role: string;
  readonly content: string;
}

/** The ids of a `/v1/completions` prompt. */
export function completionPrompt(tokenizer: Tokenizer, vocabSize: number, prompt: unknown): number[] {
  if (
    Array.isArray(prompt) && prompt.length === 1 &&
    (typeof prompt[0] === "string" || Array.isArray(prompt[0]))
  ) {
    prompt = prompt[0];
  } else if (Array.isArray(prompt) && prompt.length > 1 && typeof prompt[0] !== "number") {
    throw ApiError.badRequest(
      `'prompt' holds ${prompt.length} prompts; this server takes one prompt per request`,
      "prompt",
    );
  }
  let ids: number[];
  if (typeof prompt === "string") ids = tokenizer.encode(prompt);
  else if (Array.isArray(prompt)) ids = idsField(prompt, "prompt", vocabSize);
  else {
    throw ApiError.badRequest(
      `'prompt' must be a string or a list of token ids, got ${JSON.stringify(prompt ?? null)}`,
      "prompt",
    );
  }
  if (ids.length === 0) throw ApiError.badRequest("'prompt' must hold at least one token", "prompt");
  return ids;
}

/** Checks `messages` and flattens each content to a string. */
export function chatMessages(messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw ApiError.badRequest("'messages' must be a non-empty list of {role, content}", "messages");
  }
  return messages.map((m, i) => {
    const where = `'messages[${i}]'`;
    if (typeof m !== "object" || m === null || typeof m.role !== "string") {
      throw ApiError.badRequest(`${where} must be an object with a string 'role'`, "messages");
    }
    const content = m.content ?? "";
    if (typeof content === "string") return { role: m.role, content };
    if (Array.isArray(content)) {
      return {
        role: m.role,
        content: content.map((part, k) => {
          if (part?.type === "text" && typeof part.text === "string") return part.text;
          throw ApiError.badRequest(
            `${where}.content[${k}] must be a {type: "text", text} part (this server reads text only), got type ${
              JSON.stringify(part?.type ?? null)
            }`,
            "messages",
          );
        }).join(""),
      };
    }
    throw ApiError.badRequest(`${where}.content must be a string or a list of text parts`, "messages");
  });
}

/** The fallback rendering of the module documentation. */
export function plainChatTemplate(messages: readonly ChatMessage[]): string {
  return messages.map((m) => `${m.role}: ${m.content}\n`).join("") + "assistant:";
}

/** The ids of a chat prompt: the tokenizer's template, or the fallback when it has none. */
export function chatPrompt(tokenizer: Tokenizer, messages: readonly ChatMessage[]): number[] {
  let text: string;
  try {
    text = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
  } catch (e) {
    // The tokenizer throws a TokenizerError only when it has no template; template errors are plain Errors.
    if (e instanceof TokenizerError) return tokenizer.encode(plainChatTemplate(messages));
    throw ApiError.badRequest(`cannot render the chat template: ${(e as Error).message}`, "messages");
  }
  return tokenizer.encode(text, { addSpecialTokens: false });
}

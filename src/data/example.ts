/**
 * Examples: the one shape every training and evaluation row is normalized to, and the row forms it is made from.
 *
 * - `{prompt, completion}`.
 * - `{prompt, choices, label}` (multiple choice): the completion is `choices[label]`, or `completion` when given.
 * - `{instruction, input?, output}` (Alpaca): the prompt is the Stanford Alpaca template, the completion `output`.
 * - `{messages: [{role, content}]}` (chat): every message but the last, rendered with the tokenizer's chat
 *   template and its generation prompt, is the prompt; the last (assistant) message's content is the completion.
 * - `{text}`: an empty prompt; the whole text is the completion.
 *
 * @example
 * ```ts
 * import { toExample } from "./example.ts";
 * const ex = toExample({ prompt: "2 + 2 =", choices: [" 3", " 4"], label: 1 }, "math.jsonl:1");
 * if (ex.completion !== " 4") throw new Error("the completion of a multiple-choice row is its correct choice");
 * ```
 *
 * @module
 */

import type { Tokenizer } from "../model/tokenizer.ts";
import { DataError } from "./jsonl.ts";

/** A normalized training/evaluation example. */
export interface Example {
  /** Text before the completion (loss is not taken on it). */
  readonly prompt: string;
  /** Text the model learns to produce (loss on its tokens). */
  readonly completion: string;
  /** Multiple choice: each a continuation of `prompt`. */
  readonly choices?: readonly string[];
  /** Index of the correct choice. */
  readonly label?: number;
  /** `file:line` (or `file#item` for non-JSONL formats), for error messages. */
  readonly source: string;
}

const ALPACA_HEAD = "Below is an instruction that describes a task";
const ALPACA_WITH_INPUT = `${ALPACA_HEAD}, paired with an input that provides further context. ` +
  "Write a response that appropriately completes the request.\n\n";
const ALPACA_NO_INPUT = `${ALPACA_HEAD}. Write a response that appropriately completes the request.\n\n`;

/** The Stanford Alpaca prompt for an instruction and an optional input (omitted when empty). */
export function alpacaPrompt(instruction: string, input = ""): string {
  return input === ""
    ? `${ALPACA_NO_INPUT}### Instruction:\n${instruction}\n\n### Response:\n`
    : `${ALPACA_WITH_INPUT}### Instruction:\n${instruction}\n\n### Input:\n${input}\n\n### Response:\n`;
}

/** A value as it appears in error messages: JSON, cut to 60 characters. */
export function show(value: unknown): string {
  const text = value === undefined ? "nothing" : JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

type Row = Record<string, unknown>;

/** Reads fields of one row; every failure names the source, the field and the value seen. */
class Fields {
  constructor(readonly row: Row, readonly source: string) {}

  fail(what: string): never {
    throw new DataError(`${this.source}: ${what}`);
  }

  string(key: string, options: { nonEmpty?: boolean; optional?: boolean } = {}): string {
    const value = this.row[key];
    if (value === undefined && options.optional) return "";
    if (typeof value !== "string") this.fail(`'${key}' must be a string, got ${show(value)}`);
    if (options.nonEmpty && value === "") this.fail(`'${key}' is empty: there is nothing to learn`);
    return value;
  }

  choices(): string[] {
    const value = this.row.choices;
    if (!Array.isArray(value) || value.length < 2 || !value.every((c) => typeof c === "string")) {
      this.fail(`'choices' must be an array of at least two strings, got ${show(value)}`);
    }
    return value;
  }

  label(count: number, optional: boolean): number | undefined {
    const value = this.row.label;
    if (value === undefined && optional) return undefined;
    if (!(typeof value === "number" && Number.isInteger(value) && value >= 0 && value < count)) {
      this.fail(`'label' must be an integer index into 'choices' (0..${count - 1}), got ${show(value)}`);
    }
    return value;
  }
}

function fromChoices(f: Fields): Example {
  const prompt = f.string("prompt"), choices = f.choices();
  const hasCompletion = f.row.completion !== undefined;
  const label = f.label(choices.length, hasCompletion);
  const completion = hasCompletion ? f.string("completion", { nonEmpty: true }) : choices[label as number];
  if (completion === "") f.fail(`the correct choice (${label}) is empty: there is nothing to learn`);
  return { prompt, completion, choices, ...(label === undefined ? {} : { label }), source: f.source };
}

function fromChat(f: Fields, tokenizer: Tokenizer | undefined): Example {
  const messages = f.row.messages;
  if (!Array.isArray(messages) || messages.length < 2) {
    f.fail(`'messages' must be an array of at least two messages, got ${show(messages)}`);
  }
  const parsed = messages.map((m, i) => {
    const ok = typeof m === "object" && m !== null && typeof m.role === "string" &&
      typeof m.content === "string";
    if (!ok) f.fail(`'messages[${i}]' must be {role: string, content: string}, got ${show(m)}`);
    return { role: m.role as string, content: m.content as string };
  });
  const last = parsed[parsed.length - 1];
  if (last.role !== "assistant") {
    f.fail(`the last message must be the assistant's (the completion), got role ${show(last.role)}`);
  }
  if (last.content === "") f.fail("the last (assistant) message is empty: there is nothing to learn");
  if (tokenizer === undefined) f.fail("a chat row ({messages}) needs a tokenizer with a chat template");
  let prompt: string;
  try {
    prompt = tokenizer.applyChatTemplate(parsed.slice(0, -1), { addGenerationPrompt: true });
  } catch (e) {
    f.fail(`cannot render the chat template (${(e as Error).message})`);
  }
  return { prompt, completion: last.content, source: f.source };
}

/**
 * Converts one JSON row to an {@link Example}. Forms are tried in this order: `messages` (chat, rendered with the
 * tokenizer's chat template), `instruction` (Alpaca), `prompt` with `choices` (multiple choice), `prompt` with
 * `completion`, `text`. Other keys are ignored. A row of no known form, or with wrong field types, is a
 * {@link DataError} naming `source` and the problem.
 *
 * @example
 * ```ts
 * import { DataError } from "./jsonl.ts";
 * import { toExample } from "./example.ts";
 * const ex = toExample({ text: "Once upon a time" }, "stories.jsonl:1");
 * if (ex.prompt !== "" || ex.completion !== "Once upon a time") throw new Error("{text}: all completion");
 * try {
 *   toExample({ prompt: "hi", completion: 3 }, "bad.jsonl:7");
 * } catch (e) {
 *   if (!(e instanceof DataError) || !e.message.startsWith("bad.jsonl:7: 'completion'")) throw e;
 * }
 * ```
 */
export function toExample(row: unknown, source: string, tokenizer?: Tokenizer): Example {
  if (typeof row !== "object" || row === null || Array.isArray(row)) {
    throw new DataError(`${source}: expected a JSON object, got ${show(row)}`);
  }
  const f = new Fields(row as Row, source);
  if ("messages" in row) return fromChat(f, tokenizer);
  if ("instruction" in row) {
    const prompt = alpacaPrompt(f.string("instruction"), f.string("input", { optional: true }));
    return { prompt, completion: f.string("output", { nonEmpty: true }), source };
  }
  if ("prompt" in row && "choices" in row) return fromChoices(f);
  if ("prompt" in row && "completion" in row) {
    return { prompt: f.string("prompt"), completion: f.string("completion", { nonEmpty: true }), source };
  }
  if ("text" in row) return { prompt: "", completion: f.string("text", { nonEmpty: true }), source };
  const keys = Object.keys(row).map((k) => `'${k}'`).join(", ") || "none";
  return f.fail(
    `a row of no known form (keys: ${keys}); expected {prompt, completion}, {prompt, choices, label}, ` +
      "{instruction, input?, output}, {messages: [{role, content}]} or {text}",
  );
}

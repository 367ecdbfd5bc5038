/**
 * Paths and helpers shared by the data tests. Shared material is read in place (never copied); temporary
 * files go to fresh temporary directories that are removed afterwards.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DataError } from "../../src/data/jsonl.ts";
import { loadTokenizer, type Tokenizer } from "../../src/model/tokenizer.ts";
import { DATA, STORIES } from "../model/shared.ts";

export { DATA, STORIES };
/** The benchmark folders, in their original formats. */
export const BENCH: string = join(DATA, "benchmarks");
/** The project's own tiny dataset and the tokenizer of its tiny Llama. */
export const TINY_DATA: string = fileURLToPath(new URL("../../fixtures/tiny-data", import.meta.url));
export const TINY_LLAMA: string = fileURLToPath(new URL("../../fixtures/tiny-llama", import.meta.url));

/** Runs `body` with a fresh temporary directory holding `files` (name → text or bytes), removed afterwards. */
export async function withFiles<T>(
  files: Record<string, string | Uint8Array>,
  body: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "flexora_data_" });
  try {
    for (const [name, content] of Object.entries(files)) {
      if (typeof content === "string") await Deno.writeTextFile(join(dir, name), content);
      else await Deno.writeFile(join(dir, name), content);
    }
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** JSON Lines text of `rows`. */
export function jsonl(...rows: unknown[]): string {
  return rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
}

/** Asserts `error` is a DataError whose message contains every one of `parts`. */
export function assertDataError(error: unknown, ...parts: string[]): void {
  assert.ok(error instanceof DataError, `expected a DataError, got ${error}`);
  for (const part of parts) {
    assert.ok(error.message.includes(part), `${JSON.stringify(part)} not in: ${error.message}`);
  }
}

/** Asserts that `promise` rejects with a DataError naming every one of `parts`. */
export async function rejectsNaming(promise: Promise<unknown>, ...parts: string[]): Promise<void> {
  const error = await promise.then(() => null, (e) => e);
  assert.ok(error !== null, "expected a rejection");
  assertDataError(error, ...parts);
}

/** Asserts that `fn` throws a DataError naming every one of `parts`. */
export function throwsNaming(fn: () => unknown, ...parts: string[]): void {
  let error: unknown = null;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  assert.ok(error !== null, "expected an error");
  assertDataError(error, ...parts);
}

/** A chat template in the style of Zephyr: role tags, EOS after each turn. */
export const CHAT_TEMPLATE =
  "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}\n{% endfor %}" +
  "{% if add_generation_prompt %}<|assistant|>{% endif %}";

/** The tiny Llama's tokenizer, with {@link CHAT_TEMPLATE} added to its config in a temporary directory. */
export async function chatTokenizer(): Promise<Tokenizer> {
  const config = JSON.parse(await Deno.readTextFile(join(TINY_LLAMA, "tokenizer_config.json")));
  return await withFiles({
    "tokenizer.json": await Deno.readTextFile(join(TINY_LLAMA, "tokenizer.json")),
    "tokenizer_config.json": JSON.stringify({ ...config, chat_template: CHAT_TEMPLATE }),
  }, (dir) => loadTokenizer(dir));
}

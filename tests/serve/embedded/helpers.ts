/**
 * Shared pieces of the embedded server's tests: model paths, requests through `app.request()`, server-sent event
 * parsing, PEFT adapters written for a test, and a copy of the tiny fixture with a chat template.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Hono } from "hono";
import type { ModelConfig } from "../../../src/model/config.ts";
import type { LoraConfig, TargetModule } from "../../../src/model/lora.ts";
import { writeAdapter } from "../../../src/model/peft.ts";
import { nonzeroLora } from "../../model/random_lora.ts";

/** The project's tiny random Llama (word-level tokenizer, no chat template, 3 layers, 128 positions). */
export const TINY: string = fileURLToPath(new URL("../../../fixtures/tiny-llama", import.meta.url));
/** stories260K, read in place. */
export const STORIES: string = fileURLToPath(
  new URL("../../../../shared/models/stories260K", import.meta.url),
);
/** Greedy continuation of [1] on stories260K (../shared/README.md). */
export const STORIES_GOLDEN: number[] =
  "403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 322 265 282 295 433 426 385"
    .split(" ").map(Number);

/** A JSON request through the app; `body` is sent as is when it is a string. */
export function post(app: Hono, path: string, body: unknown): Promise<Response> {
  return Promise.resolve(app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  }));
}

/** Status and parsed JSON body of a request. */
export async function postJson(
  app: Hono,
  path: string,
  body: unknown,
  // deno-lint-ignore no-explicit-any
): Promise<{ status: number; body: any }> {
  const res = await post(app, path, body);
  return { status: res.status, body: await res.json() };
}

/** The `data:` payloads of a server-sent event stream, in order. */
export function sseData(text: string): string[] {
  return text.split("\n\n").filter((e) => e.trim() !== "").map((event) => {
    const lines = event.split("\n").filter((l) => l.startsWith("data: "));
    if (lines.length === 0) throw new Error(`an event without data: ${JSON.stringify(event)}`);
    return lines.map((l) => l.slice("data: ".length)).join("\n");
  });
}

/** A fresh temporary folder, removed when the test process ends. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: `flexora-embedded-${prefix}-` });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  return dir;
}

/** The shape of a test adapter. */
export interface TestAdapter {
  rank?: number;
  alpha?: number;
  targets?: TargetModule[];
  layers?: number[];
  seed?: number;
}

/**
 * Writes a PEFT adapter to `dir` with seeded A and nonzero seeded B (±0.5), so it changes the model's output.
 * Defaults: rank 4, alpha 8 (a scale of 2), q_proj and v_proj, every layer.
 */
export async function writeTestAdapter(
  dir: string,
  cfg: ModelConfig,
  shape: TestAdapter = {},
): Promise<LoraConfig> {
  const rank = shape.rank ?? 4;
  const config: LoraConfig = {
    rank,
    alpha: shape.alpha ?? 2 * rank,
    rslora: false,
    targets: shape.targets ?? ["q_proj", "v_proj"],
    layers: shape.layers ?? Array.from({ length: cfg.numLayers }, (_, l) => l),
  };
  const seed = shape.seed ?? 1;
  const params = nonzeroLora(cfg, config, { seed, bSeed: seed + 1000, range: 0.5 });
  await writeAdapter(dir, config, params);
  return config;
}

/** A chat template in the tiny fixture's vocabulary (its word-level tokenizer maps other words to <unk>). */
export const TINY_CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}question : {% else %}answer : {% endif %}" +
  "{{ m['content'] }} . {% endfor %}{% if add_generation_prompt %}answer :{% endif %}";

/** A copy of the tiny fixture whose tokenizer_config.json has {@link TINY_CHAT_TEMPLATE}. */
export async function tinyWithChatTemplate(): Promise<string> {
  const dir = join(await tempDir("chat"), "tiny-chat");
  await Deno.mkdir(dir);
  for await (const entry of Deno.readDir(TINY)) {
    await Deno.copyFile(join(TINY, entry.name), join(dir, entry.name));
  }
  const file = join(dir, "tokenizer_config.json");
  const config = JSON.parse(await Deno.readTextFile(file));
  await Deno.writeTextFile(file, JSON.stringify({ ...config, chat_template: TINY_CHAT_TEMPLATE }, null, 2));
  return dir;
}

/**
 * A model directory's tokenizer as llama.cpp's `tokenizer.ggml.*` metadata, read from `tokenizer.json` and
 * `tokenizer_config.json` (the files flexora's own tokenizer loads). Two kinds have a llama.cpp counterpart:
 *
 * - SentencePiece-style BPE (`byte_fallback`, `▁` for spaces: Llama 1/2, Mistral, TinyLlama, stories260K) →
 *   `tokenizer.ggml.model = "llama"`. llama.cpp tokenizes it by merging, at each step, the adjacent pair whose
 *   merged token has the highest score. llama.cpp's own converter gives every token of a `tokenizer.json` score
 *   −1000, which loses the merge order; flexora gives each merged token minus the rank of the first merge that
 *   produces it (all others rank below every merge), so llama.cpp merges in `tokenizer.json`'s order.
 * - Byte-level BPE (GPT-2 style: Llama 3, Qwen2) → `"gpt2"` with the merges, and the pre-tokenizer llama.cpp
 *   knows the family by (`qwen2`, `llama-bpe`, otherwise `default`).
 *
 * Token types follow llama.cpp: 1 normal, 2 unknown, 3 control (special added tokens), 4 user-defined (other
 * added tokens), 5 unused (padding up to the model's vocabulary), 6 byte (`<0xNN>`).
 *
 * @module
 */

import { join } from "node:path";
import type { ModelConfig } from "../../model/config.ts";
import { meta, type Metadata } from "./container.ts";

const NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6;

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

async function readJson(file: string): Promise<Json> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    throw new Error(`${file}: cannot read the tokenizer for GGUF export (${(e as Error).message})`);
  }
  if (!isObject(json)) throw new Error(`${file}: expected a JSON object`);
  return json;
}

/** The text of a special token in `tokenizer_config.json` (a string or a serialized AddedToken). */
function special(config: Json, key: string): string | null {
  const v = config[key];
  if (typeof v === "string") return v;
  return isObject(v) && typeof v.content === "string" ? v.content : null;
}

/** A merge as `tokenizer.json` stores it, "a b" or ["a", "b"], as its two parts. */
function mergeParts(merge: unknown, file: string): [string, string] {
  if (typeof merge === "string") {
    const space = merge.indexOf(" ");
    if (space > 0) return [merge.slice(0, space), merge.slice(space + 1)];
  } else if (Array.isArray(merge) && merge.length === 2 && merge.every((p) => typeof p === "string")) {
    return merge as [string, string];
  }
  throw new Error(`${file}: merge ${JSON.stringify(merge)} is neither "a b" nor ["a", "b"]`);
}

/** The steps of a normalizer or pre-tokenizer: a `Sequence`'s list, or the one step. */
function steps(v: unknown): Json[] {
  if (!isObject(v)) return [];
  const list = v.type === "Sequence" ? v.normalizers ?? v.pretokenizers ?? v.processors : [v];
  return Array.isArray(list) ? list.filter(isObject) : [];
}

/** True when the tokenizer puts `▁` before the text, as SentencePiece's add_dummy_prefix does. */
function prependsSpace(json: Json): boolean {
  const normal = steps(json.normalizer).some((s) => s.type === "Prepend" && s.prepend === "▁");
  const pre = steps(json.pre_tokenizer).some((s) =>
    s.type === "Metaspace" && s.prepend_scheme !== "never" && s.add_prefix_space !== false
  );
  return normal || pre;
}

/** `add_bos_token` from tokenizer_config.json, else whether tokenizer.json's post-processor puts `bos` first. */
function addsBos(json: Json, config: Json, bos: string | null): boolean {
  if (typeof config.add_bos_token === "boolean") return config.add_bos_token;
  return steps(json.post_processor).some((p) => {
    const first = Array.isArray(p.single) ? p.single[0] : undefined;
    return isObject(first) && isObject(first.SpecialToken) && first.SpecialToken.id === bos;
  });
}

/** The pre-tokenizer llama.cpp applies before byte-level BPE, by family. */
function preTokenizer(cfg: ModelConfig, model: Json): string {
  if (cfg.architecture === "qwen2") return "qwen2";
  return model.ignore_merges === true ? "llama-bpe" : "default";
}

/**
 * The `tokenizer.ggml.*` metadata of the tokenizer in `dir`, for a model with `cfg.vocabSize` embedding rows
 * (ids the tokenizer lacks become unused `[PAD<id>]` tokens). A tokenizer kind llama.cpp lacks is an error naming
 * the file and the kind.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { readConfig } from "../../model/config.ts";
 * import { vocabMetadata } from "./vocab.ts";
 * const dir = fileURLToPath(new URL("../../../fixtures/tiny-llama-spm", import.meta.url));
 * const kv = await vocabMetadata(dir, await readConfig(dir));
 * if (kv["tokenizer.ggml.model"].value !== "llama") throw new Error("SentencePiece-style BPE");
 * ```
 */
export async function vocabMetadata(dir: string, cfg: ModelConfig): Promise<Metadata> {
  const file = join(dir, "tokenizer.json");
  const json = await readJson(file);
  const config = await readJson(join(dir, "tokenizer_config.json"));
  const model = isObject(json.model) ? json.model : {};
  const vocab = isObject(model.vocab) ? model.vocab as Record<string, number> : null;
  if (model.type !== "BPE" || !vocab) {
    throw new Error(
      `${file}: tokenizer model ${JSON.stringify(model.type)} has no llama.cpp counterpart; GGUF export ` +
        `supports BPE tokenizers (SentencePiece-style with byte_fallback, or byte-level)`,
    );
  }
  const spm = model.byte_fallback === true;
  const tokens = Array.from({ length: cfg.vocabSize }, (_, i) => `[PAD${i}]`);
  const types = Array.from({ length: cfg.vocabSize }, () => UNUSED);
  const place = (text: string, id: unknown, type: number) => {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= cfg.vocabSize) {
      throw new Error(
        `${file}: token ${JSON.stringify(text)} has id ${id}, outside the model's vocabulary 0..${
          cfg.vocabSize - 1
        }`,
      );
    }
    tokens[id as number] = text;
    types[id as number] = type;
  };
  for (const [text, id] of Object.entries(vocab)) {
    place(text, id, spm && /^<0x[0-9A-Fa-f]{2}>$/.test(text) ? BYTE : NORMAL);
  }
  const unk = typeof model.unk_token === "string" ? model.unk_token : null;
  for (const t of Array.isArray(json.added_tokens) ? json.added_tokens.filter(isObject) : []) {
    const text = String(t.content);
    place(text, t.id, text === unk ? UNKNOWN : t.special === true ? CONTROL : USER_DEFINED);
  }
  const merges = (Array.isArray(model.merges) ? model.merges : []).map((m) => mergeParts(m, file));
  const ids = new Map(tokens.map((t, i) => [t, i]));
  const kv: Metadata = {
    "tokenizer.ggml.model": meta.string(spm ? "llama" : "gpt2"),
  };
  if (spm) {
    const scores = tokens.map(() => -(merges.length + 1));
    merges.forEach(([a, b], rank) => {
      const id = ids.get(a + b);
      if (id !== undefined && scores[id] === -(merges.length + 1)) scores[id] = -rank;
    });
    kv["tokenizer.ggml.pre"] = meta.string("default");
    kv["tokenizer.ggml.tokens"] = meta.strings(tokens);
    kv["tokenizer.ggml.scores"] = meta.f32s(scores);
    kv["tokenizer.ggml.token_type"] = meta.i32s(types);
    kv["tokenizer.ggml.add_space_prefix"] = meta.bool(prependsSpace(json));
  } else {
    kv["tokenizer.ggml.pre"] = meta.string(preTokenizer(cfg, model));
    kv["tokenizer.ggml.tokens"] = meta.strings(tokens);
    kv["tokenizer.ggml.token_type"] = meta.i32s(types);
    kv["tokenizer.ggml.merges"] = meta.strings(merges.map(([a, b]) => `${a} ${b}`));
  }
  const idOf = (key: string, fallback: number | null | undefined) => {
    const text = special(config, key);
    return (text !== null ? ids.get(text) : undefined) ?? fallback ?? null;
  };
  const specials: [string, number | null][] = [
    ["bos_token_id", idOf("bos_token", cfg.bosTokenId)],
    ["eos_token_id", idOf("eos_token", cfg.eosTokenIds[0])],
    ["unknown_token_id", unk !== null ? ids.get(unk) ?? null : null],
    ["padding_token_id", idOf("pad_token", null)],
  ];
  for (const [key, id] of specials) if (id !== null) kv[`tokenizer.ggml.${key}`] = meta.u32(id);
  kv["tokenizer.ggml.add_bos_token"] = meta.bool(addsBos(json, config, special(config, "bos_token")));
  kv["tokenizer.ggml.add_eos_token"] = meta.bool(config.add_eos_token === true);
  if (typeof config.chat_template === "string") {
    kv["tokenizer.chat_template"] = meta.string(config.chat_template);
  }
  return kv;
}

/**
 * GGUF export read back with an independent parser (`@huggingface/gguf`): llama.cpp's names, shapes and
 * hyperparameters, the tokenizer, the q/k row order for llama.cpp's RoPE, F16 storage, Llama 3 RoPE factors,
 * the Qwen2 and Mistral mappings, adapters (names, shapes, alpha with rsLoRA folded in), and bad input.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { exportAdapterGguf } from "../../src/export/gguf/adapter.ts";
import { exportModelGguf } from "../../src/export/gguf/model.ts";
import { permuteRope } from "../../src/export/gguf/names.ts";
import { vocabMetadata } from "../../src/export/gguf/vocab.ts";
import { readConfig } from "../../src/model/config.ts";
import { initLora, type LoraConfig } from "../../src/model/lora.ts";
import { writeAdapter } from "../../src/model/peft.ts";
import { openCheckpoint, readHeader, readTensorF32, writeSafetensors } from "../../src/model/safetensors.ts";
import { Rng } from "../../src/util/random.ts";
import { TINY } from "../cli/run.ts";
import { STORIES } from "../model/shared.ts";
import { readGguf } from "./read_gguf.ts";
import { qkvBiases, randomAdapter, storiesVariant, tempDir } from "./variants.ts";

const tmp = await tempDir("flexora-gguf-test-");
const ckpt = await openCheckpoint(STORIES);
const hf = (name: string) => readTensorF32(ckpt.get(name));
const stories32 = join(tmp, "stories-f32.gguf");
await exportModelGguf(STORIES, stories32, { dtype: "F32" });

/** Row-major [rows, cols] with rows = heads·Dh back from interleaved pairs to rotate-half halves. */
function unpermute(data: Float32Array, heads: number, cols: number): Float32Array {
  const dh = data.length / cols / heads, out = new Float32Array(data.length);
  for (let r = 0; r < heads * dh; r++) {
    const h = Math.floor(r / dh), k = r % dh, pair = Math.floor(k / 2), j = k % 2;
    const from = r * cols, to = (h * dh + j * (dh / 2) + pair) * cols;
    out.set(data.subarray(from, from + cols), to);
  }
  return out;
}

Deno.test("stories260K as GGUF: llama.cpp's tensor names and shapes, and hyperparameters from config.json", async () => {
  const file = await readGguf(stories32);
  const m = file.metadata;
  assert.equal(m["general.architecture"], "llama");
  assert.equal(m["general.file_type"], 0);
  const expect: Record<string, number> = {
    "llama.block_count": 5,
    "llama.context_length": 512,
    "llama.embedding_length": 64,
    "llama.feed_forward_length": 172,
    "llama.attention.head_count": 8,
    "llama.attention.head_count_kv": 4,
    "llama.rope.dimension_count": 8,
    "llama.rope.freq_base": 10000,
  };
  for (const [key, value] of Object.entries(expect)) assert.equal(m[key], value, key);
  assert.ok(Math.abs((m["llama.attention.layer_norm_rms_epsilon"] as number) - 1e-5) < 1e-10);
  const modules = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
    .concat(["attn_norm", "ffn_norm"]);
  const names = ["token_embd.weight", "output_norm.weight"]
    .concat([0, 1, 2, 3, 4].flatMap((l) => modules.map((n) => `blk.${l}.${n}.weight`)));
  assert.deepEqual([...file.tensors.keys()].sort(), names.sort(), "tied head: no output.weight");
  const shape = (n: string) => file.tensors.get(n)?.shape;
  assert.deepEqual(shape("token_embd.weight"), [64, 512]);
  assert.deepEqual(shape("blk.0.attn_k.weight"), [64, 32]);
  assert.deepEqual(shape("blk.0.ffn_down.weight"), [172, 64]);
  assert.deepEqual(shape("blk.0.attn_norm.weight"), [64]);
  assert.ok([...file.tensors.values()].every((t) => t.dtype === "F32"));
  assert.deepEqual(await file.data("token_embd.weight"), await hf("model.embed_tokens.weight"));
  assert.deepEqual(
    await file.data("blk.4.attn_v.weight"),
    await hf("model.layers.4.self_attn.v_proj.weight"),
  );
});

Deno.test("q and k rows are permuted per head (q: 8 heads, k: 4), everything else is copied as is", async () => {
  const file = await readGguf(stories32);
  const q = await file.data("blk.2.attn_q.weight"), k = await file.data("blk.2.attn_k.weight");
  assert.deepEqual(unpermute(q, 8, 64), await hf("model.layers.2.self_attn.q_proj.weight"));
  assert.deepEqual(unpermute(k, 4, 64), await hf("model.layers.2.self_attn.k_proj.weight"));
  assert.notDeepEqual(q, await hf("model.layers.2.self_attn.q_proj.weight"));
});

Deno.test("permuteRope maps rotate-half RoPE (Hugging Face) onto interleaved-pair RoPE (llama.cpp)", () => {
  const dh = 8, heads = 3, rng = new Rng(1), position = 5;
  const theta = (i: number) => position / 10000 ** ((2 * i) / dh);
  const halves = (x: Float32Array) =>
    x.map((_, r) => {
      const h = Math.floor(r / dh), k = r % dh, i = k % (dh / 2), base = h * dh;
      const [a, b] = [x[base + i], x[base + i + dh / 2]];
      return k < dh / 2
        ? a * Math.cos(theta(i)) - b * Math.sin(theta(i))
        : b * Math.cos(theta(i)) + a * Math.sin(theta(i));
    });
  const pairs = (x: Float32Array) =>
    x.map((_, r) => {
      const k = r % dh, i = Math.floor(k / 2), base = r - k;
      const [a, b] = [x[base + 2 * i], x[base + 2 * i + 1]];
      return k % 2 === 0
        ? a * Math.cos(theta(i)) - b * Math.sin(theta(i))
        : b * Math.cos(theta(i)) + a * Math.sin(theta(i));
    });
  const x = Float32Array.from({ length: heads * dh }, () => rng.uniform(-1, 1));
  const want = permuteRope(halves(x), heads, 1), got = pairs(permuteRope(x, heads, 1));
  for (let i = 0; i < x.length; i++) {
    assert.ok(Math.abs(want[i] - got[i]) < 1e-6, `${i}: ${want[i]} ${got[i]}`);
  }
});

Deno.test("the tokenizer: SentencePiece-style 'llama' vocabulary, token types, special ids, merge-order scores", async () => {
  const m = (await readGguf(stories32)).metadata;
  const json = JSON.parse(await Deno.readTextFile(join(STORIES, "tokenizer.json")));
  const tokens = m["tokenizer.ggml.tokens"] as string[];
  const vocab = json.model.vocab as Record<string, number>;
  assert.equal(m["tokenizer.ggml.model"], "llama");
  assert.equal(tokens.length, 512);
  for (const [text, id] of Object.entries(vocab)) assert.equal(tokens[id], text);
  const types = m["tokenizer.ggml.token_type"] as number[];
  assert.deepEqual(types.slice(0, 3), [2, 3, 3], "<unk> unknown, <s> and </s> control");
  assert.ok(types.slice(3, 259).every((t) => t === 6), "<0x00>..<0xFF> are byte tokens");
  assert.ok(types.slice(259).every((t) => t === 1));
  const ids = [
    m["tokenizer.ggml.bos_token_id"],
    m["tokenizer.ggml.eos_token_id"],
    m["tokenizer.ggml.unknown_token_id"],
  ];
  assert.deepEqual(ids, [1, 2, 0]);
  assert.equal(m["tokenizer.ggml.add_bos_token"], true);
  assert.equal(m["tokenizer.ggml.add_space_prefix"], true);
  // llama.cpp merges the pair whose result scores highest: a merge listed earlier must never score lower.
  const scores = m["tokenizer.ggml.scores"] as number[];
  const merged = (json.model.merges as (string | string[])[]).map((p) =>
    vocab[(Array.isArray(p) ? p : p.split(" ")).join("")]
  );
  for (let r = 1; r < merged.length; r++) {
    assert.ok(
      scores[merged[r - 1]] >= scores[merged[r]],
      `merge ${r}: ${scores[merged[r - 1]]} < ${scores[merged[r]]}`,
    );
  }
  const unmerged = tokens.map((_, i) => i).filter((i) => !merged.includes(i));
  assert.ok(unmerged.every((i) => scores[i] < Math.min(...merged.map((id) => scores[id]))));
});

Deno.test("F16 export: matrices F16 within half-precision rounding, norms F32 and exact", async () => {
  const out = join(tmp, "stories-f16.gguf");
  const result = await exportModelGguf(STORIES, out, { dtype: "F16" });
  assert.equal(result.dtype, "F16");
  const file = await readGguf(out);
  assert.equal(file.metadata["general.file_type"], 1);
  assert.equal(file.tensors.get("blk.1.ffn_up.weight")?.dtype, "F16");
  assert.equal(file.tensors.get("blk.1.ffn_norm.weight")?.dtype, "F32");
  const src = await hf("model.layers.1.mlp.up_proj.weight"), got = await file.data("blk.1.ffn_up.weight");
  for (let i = 0; i < src.length; i++) {
    assert.ok(Math.abs(src[i] - got[i]) <= Math.abs(src[i]) * 2 ** -11 + 2 ** -25);
  }
  assert.deepEqual(
    await file.data("blk.1.ffn_norm.weight"),
    await hf("model.layers.1.post_attention_layernorm.weight"),
  );
  assert.ok(result.bytes < (await Deno.stat(stories32)).size * 0.6);
});

Deno.test("without --dtype, a checkpoint of 16-bit matrices is exported as F16, an F32 one as F32", async () => {
  const half = await storiesVariant(join(tmp, "stories-f16"), {}, {}, { matrices: "F16" });
  assert.equal((await exportModelGguf(half, join(tmp, "auto-f16.gguf"))).dtype, "F16");
  assert.equal((await exportModelGguf(STORIES, join(tmp, "auto-f32.gguf"))).dtype, "F32");
});

Deno.test("a byte-level BPE tokenizer becomes llama.cpp's 'gpt2' vocabulary with its merges and pre-tokenizer", async () => {
  const dir = join(tmp, "byte-level");
  await Deno.mkdir(dir);
  const vocab = { "a": 0, "b": 1, "Ġ": 2, "Ġa": 3, "ab": 4 };
  await Deno.writeTextFile(
    join(dir, "tokenizer.json"),
    JSON.stringify({
      model: { type: "BPE", byte_fallback: false, vocab, merges: ["Ġ a", ["a", "b"]] },
      added_tokens: [{ id: 5, content: "<|endoftext|>", special: true }, {
        id: 6,
        content: "<tool>",
        special: false,
      }],
    }),
  );
  await Deno.writeTextFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({ eos_token: "<|endoftext|>" }),
  );
  const cfg = {
    ...await readConfig(STORIES),
    architecture: "qwen2" as const,
    vocabSize: 8,
    bosTokenId: null,
  };
  const kv = await vocabMetadata(dir, cfg);
  const value = (key: string) => kv[key]?.value;
  assert.equal(value("tokenizer.ggml.model"), "gpt2");
  assert.equal(value("tokenizer.ggml.pre"), "qwen2");
  assert.deepEqual(value("tokenizer.ggml.tokens"), [
    "a",
    "b",
    "Ġ",
    "Ġa",
    "ab",
    "<|endoftext|>",
    "<tool>",
    "[PAD7]",
  ]);
  assert.deepEqual(value("tokenizer.ggml.token_type"), [1, 1, 1, 1, 1, 3, 4, 5]);
  assert.deepEqual(value("tokenizer.ggml.merges"), ["Ġ a", "a b"]);
  assert.equal(value("tokenizer.ggml.eos_token_id"), 5);
  assert.equal(value("tokenizer.ggml.bos_token_id"), undefined);
  assert.equal(value("tokenizer.ggml.add_bos_token"), false);
  assert.equal(kv["tokenizer.ggml.scores"], undefined);
});

Deno.test("Llama 3 RoPE scaling becomes rope_freqs.weight: 1 for high frequencies, the factor for low ones", async () => {
  const dir = await storiesVariant(join(tmp, "llama3"), {
    rope_scaling: {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 64,
    },
  });
  const out = join(tmp, "llama3.gguf");
  await exportModelGguf(dir, out);
  const factors = await (await readGguf(out)).data("rope_freqs.weight");
  assert.equal(factors.length, 4);
  // wavelengths 2π·10000^(i/4) = 6.3, 63, 628, 6283 against 64/4 = 16 and 64/1 = 64
  assert.equal(factors[0], 1);
  assert.ok(factors[1] > 1 && factors[1] < 8, `${factors[1]} lies between`);
  assert.ok(Math.abs(factors[2] - 8) < 1e-5 && Math.abs(factors[3] - 8) < 1e-5);
});

Deno.test("qwen2 keeps its q/k row order and its q/k/v biases; mistral is exported as a llama", async () => {
  const qwen2 = await storiesVariant(join(tmp, "qwen2"), { model_type: "qwen2" }, qkvBiases());
  const out = join(tmp, "qwen2.gguf");
  assert.equal((await exportModelGguf(qwen2, out)).architecture, "qwen2");
  const file = await readGguf(out);
  assert.equal(file.metadata["qwen2.attention.head_count_kv"], 4);
  assert.deepEqual(file.tensors.get("blk.0.attn_q.bias")?.shape, [64]);
  assert.deepEqual(
    await file.data("blk.3.attn_q.weight"),
    await hf("model.layers.3.self_attn.q_proj.weight"),
  );
  const mistral = await storiesVariant(join(tmp, "mistral"), { model_type: "mistral" });
  const m = await readGguf((await exportModelGguf(mistral, join(tmp, "mistral.gguf"))).path);
  assert.equal(m.metadata["general.architecture"], "llama");
  assert.deepEqual(
    unpermute(await m.data("blk.3.attn_q.weight"), 8, 64),
    await hf("model.layers.3.self_attn.q_proj.weight"),
  );
});

Deno.test("adapter export: only its modules, lora_a [in, R] and lora_b [R, out], q/k B rows permuted", async () => {
  const lora: LoraConfig = {
    rank: 4,
    alpha: 8,
    rslora: false,
    targets: ["q_proj", "v_proj", "down_proj"],
    layers: [1, 3],
  };
  const peft = await randomAdapter(STORIES, join(tmp, "plain"), lora);
  const out = join(tmp, "plain.gguf");
  assert.equal((await exportAdapterGguf(peft, STORIES, out)).tensors, 12);
  const file = await readGguf(out);
  assert.equal(file.metadata["general.type"], "adapter");
  assert.equal(file.metadata["general.architecture"], "llama");
  assert.equal(file.metadata["adapter.type"], "lora");
  assert.equal(file.metadata["adapter.lora.alpha"], 8);
  const names = [1, 3].flatMap((l) =>
    ["attn_q", "attn_v", "ffn_down"].flatMap((
      m,
    ) => [`blk.${l}.${m}.weight.lora_a`, `blk.${l}.${m}.weight.lora_b`])
  );
  assert.deepEqual([...file.tensors.keys()].sort(), names.sort());
  assert.deepEqual(file.tensors.get("blk.1.attn_q.weight.lora_a")?.shape, [64, 4]);
  assert.deepEqual(file.tensors.get("blk.1.attn_q.weight.lora_b")?.shape, [4, 64]);
  assert.deepEqual(file.tensors.get("blk.3.ffn_down.weight.lora_a")?.shape, [172, 4]);
  const { tensors } = await readHeader(join(peft, "adapter_model.safetensors"));
  const peftData = (key: string) => readTensorF32(tensors.find((t) => t.name === `base_model.model.${key}`)!);
  const qB = await file.data("blk.1.attn_q.weight.lora_b");
  assert.deepEqual(unpermute(qB, 8, 4), await peftData("model.layers.1.self_attn.q_proj.lora_B.weight"));
  assert.deepEqual(
    await file.data("blk.1.attn_q.weight.lora_a"),
    await peftData("model.layers.1.self_attn.q_proj.lora_A.weight"),
  );
  assert.deepEqual(
    await file.data("blk.3.attn_v.weight.lora_b"),
    await peftData("model.layers.3.self_attn.v_proj.lora_B.weight"),
  );
});

Deno.test("rsLoRA is folded into alpha: llama.cpp's alpha / R equals alpha / √R", async () => {
  const lora: LoraConfig = { rank: 16, alpha: 8, rslora: true, targets: ["k_proj"], layers: [0] };
  const peft = await randomAdapter(STORIES, join(tmp, "rslora"), lora);
  const out = join(tmp, "rslora.gguf");
  await exportAdapterGguf(peft, STORIES, out);
  const alpha = (await readGguf(out)).metadata["adapter.lora.alpha"] as number;
  assert.ok(Math.abs(alpha / 16 - 8 / Math.sqrt(16)) < 1e-6, `alpha ${alpha}`);
});

/** Runs `f`, which must throw; returns the message. */
async function failure(f: () => Promise<unknown>): Promise<string> {
  const error = await f().then(() => null, (e) => e);
  assert.ok(error instanceof Error, "expected an error");
  return error.message;
}

Deno.test("bad input is an error naming the value: architecture, tensors, tokenizer, F16 range, adapters", async () => {
  const gemma = await storiesVariant(join(tmp, "gemma"), { model_type: "gemma" });
  assert.match(
    await failure(() => exportModelGguf(gemma, join(tmp, "x.gguf"))),
    /'model_type' must be one of llama, mistral, qwen2, got "gemma"/,
  );
  const extra = await storiesVariant(join(tmp, "extra"), {}, { "model.layers.0.mlp.gate_norm.weight": [64] });
  assert.match(
    await failure(() => exportModelGguf(extra, join(tmp, "x.gguf"))),
    /'model\.layers\.0\.mlp\.gate_norm\.weight' has no llama\.cpp counterpart/,
  );
  assert.match(
    await failure(() => exportModelGguf(TINY, join(tmp, "x.gguf"))),
    /tokenizer\.json: tokenizer model "WordLevel" has no llama\.cpp counterpart/,
  );
  const huge = await storiesVariant(join(tmp, "huge"), { tie_word_embeddings: false }, {
    "lm_head.weight": [512, 64],
  }, {
    scale: 1e6,
  });
  assert.match(
    await failure(() => exportModelGguf(huge, join(tmp, "x.gguf"), { dtype: "F16" })),
    /tensor 'output\.weight' holds -?\d+(\.\d+)? at index \d+, which F16 cannot represent/,
  );
  await assert.rejects(Deno.stat(join(tmp, "x.gguf")), Deno.errors.NotFound, "no half-written file is left");
  // an adapter made for the tiny model (D 32) does not fit stories260K (D 64)
  const tinyCfg = await readConfig(TINY);
  const small: LoraConfig = { rank: 2, alpha: 4, rslora: false, targets: ["q_proj"], layers: [0] };
  await writeAdapter(join(tmp, "for-tiny"), small, initLora(tinyCfg, small, 0));
  assert.match(
    await failure(() => exportAdapterGguf(join(tmp, "for-tiny"), STORIES, join(tmp, "x.gguf"))),
    /tensor 'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight' has shape \[2,32\], the model needs \[2,64\]/,
  );
  // a module llama.cpp has no LoRA slot for
  const head = join(tmp, "lm-head");
  await Deno.mkdir(head);
  await Deno.writeTextFile(
    join(head, "adapter_config.json"),
    JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 4 }),
  );
  await writeSafetensors(join(head, "adapter_model.safetensors"), [
    {
      name: "base_model.model.lm_head.lora_A.weight",
      dtype: "F32",
      shape: [2, 64],
      data: new Float32Array(128),
    },
  ]);
  assert.match(
    await failure(() => exportAdapterGguf(head, STORIES, join(tmp, "x.gguf"))),
    /tensor 'base_model\.model\.lm_head\.lora_A\.weight' is not a LoRA weight of a decoder layer/,
  );
});

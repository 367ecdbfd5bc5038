import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AutoTokenizer, env } from "@huggingface/transformers";
import { COLORS, type Row, TINY_LLAMA } from "../../fixtures/make_tiny_llama.ts";
import { openCheckpoint, readTensorF32, type SafetensorsDType } from "../../src/model/safetensors.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURES = join(ROOT, "fixtures");
const FOLDERS = [
  "tiny-llama",
  "tiny-llama-bf16-sharded",
  "tiny-llama-spm",
  "tiny-data",
  "first-run-llama",
  "first-run",
];

/** Paths of the files under `dir`, relative to it, sorted. */
async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(dir, prefix))) {
    const rel = join(prefix, e.name);
    out.push(...(e.isDirectory ? await listFiles(dir, rel) : [rel]));
  }
  return out.sort();
}

const readJson = async (path: string) => JSON.parse(await Deno.readTextFile(path));

async function readRows(split: string, folder = "tiny-data"): Promise<Row[]> {
  const text = await Deno.readTextFile(join(FIXTURES, folder, `${split}.jsonl`));
  return text.trimEnd().split("\n").map((line) => JSON.parse(line));
}

Deno.test("fixtures/make_tiny_llama.ts reproduces the committed fixtures byte for byte", async () => {
  const out = await Deno.makeTempDir();
  const script = join(FIXTURES, "make_tiny_llama.ts");
  const args = ["run", "--allow-read", "--allow-write", script, out];
  const run = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdout: "null", stderr: "piped" })
    .output();
  assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
  for (const folder of FOLDERS) {
    const committed = await listFiles(join(FIXTURES, folder));
    assert.deepEqual(await listFiles(join(out, folder)), committed, `files of fixtures/${folder}`);
    for (const file of committed) {
      const [a, b] = await Promise.all(
        [join(FIXTURES, folder, file), join(out, folder, file)].map((p) => Deno.readFile(p)),
      );
      assert.ok(
        a.length === b.length && a.every((x, i) => x === b[i]),
        `fixtures/${folder}/${file} is stale`,
      );
    }
  }
  await Deno.remove(out, { recursive: true });
});

Deno.test("the tokenizer loads offline in transformers.js, matches vocab_size and round-trips the data", async () => {
  env.allowRemoteModels = false;
  const dir = join(FIXTURES, "tiny-llama");
  const tok = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  const config = await readJson(join(dir, "config.json"));
  assert.equal(tok.get_vocab().size, config.vocab_size);
  const ids = { unk: tok.unk_token_id, bos: tok.bos_token_id, eos: tok.eos_token_id, pad: tok.pad_token_id };
  assert.deepEqual(ids, { unk: 0, bos: 1, eos: 2, pad: 3 });
  assert.deepEqual([config.bos_token_id, config.eos_token_id], [1, 2]);
  const row = (await readRows("test"))[0];
  const encoded = tok.encode(row.prompt + row.completion);
  assert.equal(encoded[0], 1, "<s> is prepended");
  assert.equal(tok.decode(encoded, { skip_special_tokens: true }), row.prompt + row.completion);
  for (
    const [folder, split] of ["tiny-data", "first-run"].flatMap((f) =>
      ["train", "validation", "test"].map((s) => [f, s])
    )
  ) {
    for (const r of await readRows(split, folder)) {
      assert.ok(
        !tok.encode(r.prompt + r.completion).includes(0),
        `'${r.prompt}' has a word out of the vocab`,
      );
    }
  }
  assert.deepEqual(tok.encode("The SKY zorblax", { add_special_tokens: false }), [
    ...tok.encode("the sky", { add_special_tokens: false }),
    0,
  ]);
  for (const name of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    const sharded = join(FIXTURES, "tiny-llama-bf16-sharded", name);
    assert.equal(await Deno.readTextFile(sharded), await Deno.readTextFile(join(dir, name)), name);
  }
});

/** Every weight's shape as a Llama config implies it (HF [out, in] layouts). */
function expectedShapes(c: typeof TINY_LLAMA & { vocab_size: number; tie_word_embeddings: boolean }) {
  const {
    hidden_size: D,
    intermediate_size: I,
    num_attention_heads: H,
    num_key_value_heads: KV,
    head_dim: Dh,
  } = c;
  const shapes = new Map<string, number[]>([["model.embed_tokens.weight", [c.vocab_size, D]]]);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    shapes.set(`${p}.input_layernorm.weight`, [D]).set(`${p}.post_attention_layernorm.weight`, [D]);
    shapes.set(`${p}.self_attn.q_proj.weight`, [H * Dh, D]).set(`${p}.self_attn.o_proj.weight`, [D, H * Dh]);
    shapes.set(`${p}.self_attn.k_proj.weight`, [KV * Dh, D]).set(`${p}.self_attn.v_proj.weight`, [
      KV * Dh,
      D,
    ]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [I, D]).set(`${p}.mlp.up_proj.weight`, [I, D]);
    shapes.set(`${p}.mlp.down_proj.weight`, [D, I]);
  }
  shapes.set("model.norm.weight", [D]);
  if (!c.tie_word_embeddings) shapes.set("lm_head.weight", [c.vocab_size, D]);
  return shapes;
}

/** Checks a fixture model; `residualScale` is that of its o_proj and down_proj init (see make_tiny_llama.ts). */
async function checkModel(
  folder: string,
  dtype: SafetensorsDType,
  tied: boolean,
  residualScale = 1,
): Promise<void> {
  const dir = join(FIXTURES, folder);
  const config = await readJson(join(dir, "config.json"));
  assert.deepEqual({ ...config, ...TINY_LLAMA }, config, "the tiny architecture");
  assert.equal(config.tie_word_embeddings, tied);
  const ckpt = await openCheckpoint(dir);
  const shapes = expectedShapes(config);
  assert.deepEqual([...ckpt.tensors.keys()].sort(), [...shapes.keys()].sort());
  for (const [name, shape] of shapes) {
    const info = ckpt.get(name);
    assert.deepEqual([info.dtype, info.shape], [dtype, shape], name);
    const data = await readTensorF32(info);
    const rms = Math.sqrt(data.reduce((s, v) => s + v * v, 0) / data.length);
    assert.ok(
      data.every(Number.isFinite) && data.some((v) => v !== data[0]),
      `${name} is finite, not constant`,
    );
    const scale = /(o_proj|down_proj)\.weight$/.test(name) ? residualScale : 1;
    assert.ok(
      rms > 0.1 * scale && rms < 1.5 * scale,
      `${name}: RMS ${rms} is not that of small random weights or norm scales`,
    );
  }
}

Deno.test("tiny-llama: tied float32 weights with the shapes its config implies", async () => {
  await checkModel("tiny-llama", "F32", true);
});

Deno.test("first-run-llama: tiny-llama's shapes, residual-branch outputs 10 times smaller, its tokenizer", async () => {
  await checkModel("first-run-llama", "F32", true, 0.1);
  for (const name of ["tokenizer.json", "tokenizer_config.json", "config.json"]) {
    const same = join(FIXTURES, "tiny-llama", name);
    assert.equal(
      await Deno.readTextFile(join(FIXTURES, "first-run-llama", name)),
      await Deno.readTextFile(same),
      name,
    );
  }
});

Deno.test("tiny-llama-bf16-sharded: untied BF16 weights over two shards, all indexed tensors present", async () => {
  await checkModel("tiny-llama-bf16-sharded", "BF16", false);
  const dir = join(FIXTURES, "tiny-llama-bf16-sharded");
  const index = await readJson(join(dir, "model.safetensors.index.json"));
  const ckpt = await openCheckpoint(dir);
  const shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
  assert.deepEqual(ckpt.files, shards.map((s) => join(dir, s)));
  assert.deepEqual(Object.keys(index.weight_map).sort(), [...ckpt.tensors.keys()].sort());
  const total = [...ckpt.tensors.values()].reduce((n, t) => n + t.length, 0);
  assert.equal(index.metadata.total_size, total);
});

Deno.test("tiny-llama-spm: a SentencePiece-style BPE tokenizer: each dataset word one token, bytes otherwise", async () => {
  await checkModel("tiny-llama-spm", "F32", true);
  env.allowRemoteModels = false;
  const dir = join(FIXTURES, "tiny-llama-spm");
  const tok = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  const config = await readJson(join(dir, "config.json"));
  assert.equal(tok.get_vocab().size, config.vocab_size);
  const { model } = await readJson(join(dir, "tokenizer.json"));
  assert.deepEqual([model.type, model.byte_fallback], ["BPE", true]);
  for (const split of ["train", "validation", "test"]) {
    for (const r of await readRows(split)) {
      const text = r.prompt + r.completion;
      const ids = tok.encode(text);
      assert.equal(ids[0], 1, "<s> is prepended");
      assert.equal(ids.length, 1 + text.split(" ").length, `one token per word of '${text}'`);
      assert.equal(tok.decode(ids, { skip_special_tokens: true }), text);
    }
  }
  // Text outside the dataset's words falls back to characters, then to UTF-8 bytes (<0xC3> <0xA9> for "é").
  const ids = tok.encode("Zebra é", { add_special_tokens: false });
  assert.ok(ids.includes(model.vocab["<0xC3>"]) && ids.includes(model.vocab["<0xA9>"]), `${ids}`);
  assert.equal(tok.decode(ids), "Zebra é");
});

for (const [folder, trainSize] of [["tiny-data", 64], ["first-run", 72]] as const) {
  Deno.test(`${folder}: split sizes, well-formed rows, the answer decided by the object in the prompt`, async () => {
    const colorOf = new Map(Object.entries(COLORS).flatMap(([color, objs]) => objs.map((o) => [o, color])));
    const seen = new Set<string>();
    for (const [split, size] of [["train", trainSize], ["validation", 16], ["test", 32]] as const) {
      const rows = await readRows(split, folder);
      assert.equal(rows.length, size, split);
      for (const r of rows) {
        assert.deepEqual(Object.keys(r), ["prompt", "completion", "choices", "label"]);
        assert.deepEqual([...r.choices].sort(), Object.keys(COLORS).map((c) => ` ${c}`).sort());
        const objects = r.prompt.split(" ").filter((w) => colorOf.has(w));
        assert.equal(objects.length, 1, r.prompt);
        if (folder === "first-run") {
          assert.equal(r.prompt.split(" ").at(-1), objects[0], "the object comes last");
        }
        assert.equal(r.completion, ` ${colorOf.get(objects[0])}`, r.prompt);
        assert.equal(r.choices[r.label], r.completion);
        if (split === "train") seen.add(objects[0]);
        else assert.ok(seen.has(objects[0]), `${split} object '${objects[0]}' never appears in train`);
      }
    }
  });
}

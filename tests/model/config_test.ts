import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError, type ModelConfig, parseConfig, readConfig } from "../../src/model/config.ts";

const STORIES = fileURLToPath(new URL("../../../shared/models/stories260K", import.meta.url));

/** A valid Llama config (stories260K's shape) for the bad-input cases to spoil one field at a time. */
const LLAMA = {
  model_type: "llama",
  hidden_size: 64,
  intermediate_size: 172,
  num_hidden_layers: 5,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  vocab_size: 512,
  max_position_embeddings: 512,
  rms_norm_eps: 1e-5,
  hidden_act: "silu",
};

Deno.test("stories260K's config.json parses to the model's sizes", async () => {
  const expected: ModelConfig = {
    architecture: "llama",
    hiddenSize: 64,
    intermediateSize: 172,
    numLayers: 5,
    numHeads: 8,
    numKvHeads: 4,
    headDim: 8,
    vocabSize: 512,
    maxPositionEmbeddings: 512,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    tieWordEmbeddings: true,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    slidingWindow: null,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
  assert.deepEqual(await readConfig(STORIES), expected);
});

Deno.test("defaults follow transformers: KV = H, head_dim = D / H, theta 10000, untied, no biases", () => {
  const { num_key_value_heads: _, hidden_act: __, ...minimal } = LLAMA;
  const config = parseConfig(minimal, "min/config.json");
  assert.equal(config.numKvHeads, 8);
  assert.equal(config.headDim, 8);
  assert.equal(config.ropeTheta, 10000);
  assert.equal(config.tieWordEmbeddings, false);
  assert.deepEqual([config.qkvBias, config.oBias, config.mlpBias], [false, false, false]);
  assert.deepEqual([config.bosTokenId, config.eosTokenIds], [null, []]);
  assert.equal(parseConfig({ ...LLAMA, attention_bias: true, mlp_bias: true }, "b/config.json").oBias, true);
});

Deno.test("a Llama 3.2 config with llama3 rope scaling and several eos ids parses", () => {
  const config = parseConfig({
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: 2048,
    intermediate_size: 8192,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 64,
    vocab_size: 128256,
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-5,
    rope_theta: 500000.0,
    rope_scaling: {
      factor: 32.0,
      high_freq_factor: 4.0,
      low_freq_factor: 1.0,
      original_max_position_embeddings: 8192,
      rope_type: "llama3",
    },
    tie_word_embeddings: true,
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: 128000,
    eos_token_id: [128001, 128008, 128009],
    torch_dtype: "bfloat16",
  }, "Llama-3.2-1B/config.json");
  assert.deepEqual(config.ropeScaling, {
    type: "llama3",
    factor: 32,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
  assert.equal(config.ropeTheta, 500000);
  assert.equal(config.headDim, 64);
  assert.deepEqual(config.eosTokenIds, [128001, 128008, 128009]);
});

Deno.test("rope_type 'default' (or legacy 'type') and transformers v5 rope_parameters", () => {
  const legacy = parseConfig({ ...LLAMA, rope_scaling: { type: "default" } }, "a/config.json");
  assert.equal(legacy.ropeScaling, null);
  const v5 = parseConfig({
    ...LLAMA,
    rope_parameters: {
      rope_type: "llama3",
      rope_theta: 500000,
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  }, "v5/config.json");
  assert.equal(v5.ropeTheta, 500000);
  assert.equal(v5.ropeScaling?.factor, 8);
});

Deno.test("a Qwen2.5 config gets q/k/v bias but no o bias, and no window unless use_sliding_window", () => {
  const qwen = {
    architectures: ["Qwen2ForCausalLM"],
    model_type: "qwen2",
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    vocab_size: 151936,
    max_position_embeddings: 32768,
    max_window_layers: 21,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    sliding_window: 32768,
    use_sliding_window: false,
    tie_word_embeddings: true,
    bos_token_id: 151643,
    eos_token_id: 151643,
    hidden_act: "silu",
  };
  const config = parseConfig(qwen, "Qwen2.5-0.5B/config.json");
  assert.deepEqual([config.qkvBias, config.oBias, config.mlpBias], [true, false, false]);
  assert.equal(config.headDim, 64);
  assert.equal(config.slidingWindow, null);
  assert.equal(parseConfig({ ...qwen, use_sliding_window: true }, "q/config.json").slidingWindow, 32768);
});

Deno.test("a Mistral 7B config keeps its sliding window; null or absent means none", () => {
  const mistral = {
    architectures: ["MistralForCausalLM"],
    model_type: "mistral",
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    vocab_size: 32000,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    sliding_window: 4096,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    hidden_act: "silu",
  };
  const config = parseConfig(mistral, "Mistral-7B-v0.1/config.json");
  assert.equal(config.architecture, "mistral");
  assert.equal(config.slidingWindow, 4096);
  assert.deepEqual([config.qkvBias, config.oBias, config.mlpBias], [false, false, false]);
  assert.equal(parseConfig({ ...mistral, sliding_window: null }, "m/config.json").slidingWindow, null);
});

/** The error `fn` throws. */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}

/** Each case spoils one field of {@link LLAMA}; the message must name the file, the field and the value seen. */
const BAD: [string, Record<string, unknown>, string, string][] = [
  ["unsupported model_type", { model_type: "gpt2" }, "model_type", `"gpt2"`],
  ["non-SiLU activation", { hidden_act: "gelu" }, "hidden_act", `"gelu"`],
  ["zero size", { hidden_size: 0 }, "hidden_size", "got 0"],
  ["size as a string", { intermediate_size: "172" }, "intermediate_size", `"172"`],
  ["fractional layer count", { num_hidden_layers: 2.5 }, "num_hidden_layers", "2.5"],
  ["KV heads not dividing H", { num_key_value_heads: 3 }, "num_key_value_heads", "got 3"],
  ["H not dividing D without head_dim", { hidden_size: 60 }, "num_attention_heads", "(60)"],
  ["zero head_dim", { head_dim: 0 }, "head_dim", "got 0"],
  ["negative eps", { rms_norm_eps: -1e-5 }, "rms_norm_eps", "-0.00001"],
  ["theta as a string", { rope_theta: "10000" }, "rope_theta", `"10000"`],
  [
    "linear rope scaling",
    { rope_scaling: { type: "linear", factor: 2 } },
    "rope_scaling.rope_type",
    `"linear"`,
  ],
  [
    "yarn rope scaling",
    { rope_scaling: { rope_type: "yarn", factor: 4 } },
    "rope_scaling.rope_type",
    `"yarn"`,
  ],
  ["rope scaling not an object", { rope_scaling: 8 }, "rope_scaling", "got 8"],
  [
    "llama3 scaling with a bad factor",
    {
      rope_scaling: {
        rope_type: "llama3",
        factor: -8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    },
    "rope_scaling.factor",
    "-8",
  ],
  [
    "llama3 scaling with high <= low frequency factor",
    {
      rope_scaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 4,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    },
    "rope_scaling.high_freq_factor",
    "got 4",
  ],
  ["tie_word_embeddings as a string", { tie_word_embeddings: "true" }, "tie_word_embeddings", `"true"`],
  ["eos id as a token string", { eos_token_id: "</s>" }, "eos_token_id", `"</s>"`],
  ["negative id in an eos list", { eos_token_id: [2, -1] }, "eos_token_id", "[2,-1]"],
  ["fractional bos id", { bos_token_id: 1.5 }, "bos_token_id", "1.5"],
  ["zero mistral window", { model_type: "mistral", sliding_window: 0 }, "sliding_window", "got 0"],
  [
    "qwen2 window switched on without a size",
    { model_type: "qwen2", use_sliding_window: true },
    "sliding_window",
    "",
  ],
];

for (const [what, spoil, field, value] of BAD) {
  Deno.test(`bad config: ${what} is an error naming the file, '${field}' and the value`, () => {
    const error = thrown(() => parseConfig({ ...LLAMA, ...spoil }, "bad/config.json"));
    assert.ok(error instanceof ConfigError, String(error));
    assert.ok(error.message.startsWith("bad/config.json: "), error.message);
    assert.ok(error.message.includes(`'${field}'`), error.message);
    assert.ok(error.message.includes(value), error.message);
  });
}

Deno.test("the KV-heads message reads as documented", () => {
  assert.throws(
    () => parseConfig({ ...LLAMA, num_key_value_heads: 3 }, "m/config.json"),
    {
      name: "ConfigError",
      message: "m/config.json: 'num_key_value_heads' must divide 'num_attention_heads' (8), got 3",
    },
  );
});

Deno.test("unsupported model_type lists the supported ones", () => {
  assert.throws(
    () => parseConfig({ ...LLAMA, model_type: "gemma" }, "g/config.json"),
    /'model_type' must be one of llama, mistral, qwen2, got "gemma"/,
  );
});

Deno.test("missing required fields are named", () => {
  for (
    const field of [
      "model_type",
      "hidden_size",
      "intermediate_size",
      "num_hidden_layers",
      "num_attention_heads",
      "vocab_size",
      "rms_norm_eps",
      "max_position_embeddings",
    ]
  ) {
    const json: Record<string, unknown> = { ...LLAMA };
    delete json[field];
    assert.throws(() => parseConfig(json, "x/config.json"), {
      name: "ConfigError",
      message: `x/config.json: missing required field '${field}'`,
    });
  }
  assert.throws(
    () => parseConfig({ ...LLAMA, rope_scaling: { rope_type: "llama3", factor: 8 } }, "x/config.json"),
    /missing required field 'rope_scaling.low_freq_factor'/,
  );
});

Deno.test("a config that is not an object, or an unreadable file, is a ConfigError naming the file", async () => {
  assert.throws(() => parseConfig([LLAMA], "list/config.json"), {
    name: "ConfigError",
    message: `list/config.json: expected a JSON object, got ${JSON.stringify([LLAMA])}`,
  });
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "config.json");
    await assert.rejects(readConfig(dir), (e: Error) => e instanceof ConfigError && e.message.includes(file));
    await Deno.writeTextFile(file, `{"model_type": "llama",`);
    await assert.rejects(
      readConfig(dir),
      (e: Error) => e instanceof ConfigError && /config.json: not valid JSON/.test(e.message),
    );
    await Deno.writeTextFile(file, JSON.stringify({ ...LLAMA, some_future_field: { a: 1 } }));
    assert.equal((await readConfig(dir)).hiddenSize, 64);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

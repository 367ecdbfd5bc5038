import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AutoTokenizer, env } from "@huggingface/transformers";
import { loadTokenizer, TokenizerError } from "../../src/model/tokenizer.ts";

const STORIES = fileURLToPath(new URL("../../../shared/models/stories260K", import.meta.url));
const TEXT = "Once upon a time, there was a little girl named Lily.";
/** From shared/README.md: `tokenizer.encode(TEXT)` with the BOS token. */
const GOLDEN = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];

const TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}\n{% endfor %}" +
  "{% if add_generation_prompt %}<|assistant|>{% endif %}";

/** A tiny word-level tokenizer; `<extra>` is an added token beyond the model vocabulary (ids 0..5). */
function tinyTokenizerJson(): unknown {
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [
      special(0, "<unk>"),
      special(1, "<s>"),
      special(2, "</s>"),
      special(3, "<pad>"),
      special(7, "<extra>"),
    ],
    normalizer: null,
    pre_tokenizer: { type: "Whitespace" },
    post_processor: null,
    decoder: null,
    model: {
      type: "WordLevel",
      vocab: { "<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, hello: 4, world: 5 },
      unk_token: "<unk>",
    },
  };
}

/** Runs `body` with a fresh temporary directory holding `files` (name → text), removed afterwards. */
async function withDir(files: Record<string, string>, body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexora_tokenizer_" });
  try {
    for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(join(dir, name), text);
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const TINY = {
  "tokenizer.json": JSON.stringify(tinyTokenizerJson()),
  "tokenizer_config.json": JSON.stringify({
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "<unk>",
    pad_token: { __type: "AddedToken", content: "<pad>" },
    chat_template: TEMPLATE,
  }),
};

/** Asserts that `promise` rejects with a TokenizerError whose message contains every one of `parts`. */
async function rejectsNaming(promise: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(promise, (e: Error) => {
    assert.ok(e instanceof TokenizerError, String(e));
    for (const part of parts) {
      assert.ok(e.message.includes(part), `${JSON.stringify(part)} not in: ${e.message}`);
    }
    return true;
  });
}

Deno.test("stories260K encodes the README's golden sentence, with and without BOS", async () => {
  const tokenizer = await loadTokenizer(STORIES, { modelVocabSize: 512 });
  assert.deepEqual(tokenizer.encode(TEXT), GOLDEN);
  assert.deepEqual(tokenizer.encode(TEXT, { addSpecialTokens: false }), GOLDEN.slice(1));
});

Deno.test("stories260K decodes its ids back to the text", async () => {
  const tokenizer = await loadTokenizer(STORIES);
  assert.equal(tokenizer.decode(GOLDEN, { skipSpecialTokens: true }), TEXT);
  assert.equal(tokenizer.decode(GOLDEN), `<s> ${TEXT}`);
  assert.equal(tokenizer.decode([]), "");
  assert.throws(() => tokenizer.decode([1, 512]), {
    name: "TokenizerError",
    message: /id 512: .* ids 0..511/,
  });
});

Deno.test("stories260K: 512 ids, BOS 1, EOS 2, no pad token", async () => {
  const tokenizer = await loadTokenizer(STORIES);
  assert.equal(tokenizer.vocabSize, 512);
  assert.equal(tokenizer.bosTokenId, 1);
  assert.equal(tokenizer.eosTokenId, 2);
  assert.equal(tokenizer.padTokenId, null);
});

Deno.test("a tokenizer with more ids than the model is an error naming the directory and both sizes", async () => {
  await rejectsNaming(loadTokenizer(STORIES, { modelVocabSize: 100 }), STORIES, "512", "100");
  await rejectsNaming(loadTokenizer(STORIES, { modelVocabSize: 0 }), "'modelVocabSize'", "got 0");
});

Deno.test("missing directory, missing or corrupt files are errors naming the file", async () => {
  const nowhere = join(STORIES, "no-such-dir");
  await rejectsNaming(loadTokenizer(nowhere), join(nowhere, "tokenizer.json"), "not found");
  await withDir({ "tokenizer_config.json": "{}" }, async (dir) => {
    await rejectsNaming(loadTokenizer(dir), join(dir, "tokenizer.json"), "not found");
  });
  await withDir({ "tokenizer.json": TINY["tokenizer.json"] }, async (dir) => {
    await rejectsNaming(loadTokenizer(dir), join(dir, "tokenizer_config.json"), "not found");
  });
  await withDir({ ...TINY, "tokenizer.json": `{"model": {"type": "BPE",` }, async (dir) => {
    await rejectsNaming(loadTokenizer(dir), join(dir, "tokenizer.json"), "not valid JSON");
  });
  await withDir({ ...TINY, "tokenizer_config.json": "[1, 2" }, async (dir) => {
    await rejectsNaming(loadTokenizer(dir), join(dir, "tokenizer_config.json"), "not valid JSON");
  });
  await withDir({ ...TINY, "tokenizer.json": "[]" }, async (dir) => {
    await rejectsNaming(loadTokenizer(dir), join(dir, "tokenizer.json"), "expected a JSON object, got []");
  });
});

Deno.test("a hand-written word-level tokenizer: added tokens count, pad from the config", async () => {
  await withDir(TINY, async (dir) => {
    const tokenizer = await loadTokenizer(dir);
    assert.equal(tokenizer.vocabSize, 8);
    assert.deepEqual([tokenizer.bosTokenId, tokenizer.eosTokenId, tokenizer.padTokenId], [1, 2, 3]);
    assert.deepEqual(tokenizer.encode("hello world <extra> moon"), [4, 5, 7, 0]);
    await rejectsNaming(loadTokenizer(dir, { modelVocabSize: 6 }), dir, "vocab size 8", "vocab_size is 6");
  });
});

Deno.test("applyChatTemplate renders tokenizer_config.json's chat_template", async () => {
  await withDir(TINY, async (dir) => {
    const tokenizer = await loadTokenizer(dir);
    const messages = [{ role: "user", content: "hello" }, { role: "assistant", content: "world" }];
    assert.equal(tokenizer.applyChatTemplate(messages), "<|user|>hello</s>\n<|assistant|>world</s>\n");
    assert.equal(
      tokenizer.applyChatTemplate(messages.slice(0, 1), { addGenerationPrompt: true }),
      "<|user|>hello</s>\n<|assistant|>",
    );
  });
});

Deno.test("applyChatTemplate reads chat_template.jinja, and without a template names the directory", async () => {
  const { chat_template: _, ...config } = JSON.parse(TINY["tokenizer_config.json"]);
  const files = { ...TINY, "tokenizer_config.json": JSON.stringify(config) };
  await withDir({ ...files, "chat_template.jinja": TEMPLATE }, async (dir) => {
    const tokenizer = await loadTokenizer(dir);
    assert.equal(tokenizer.applyChatTemplate([{ role: "user", content: "hi" }]), "<|user|>hi</s>\n");
  });
  const stories = await loadTokenizer(STORIES);
  assert.throws(() => stories.applyChatTemplate([{ role: "user", content: "hi" }]), (e: Error) => {
    assert.ok(
      e instanceof TokenizerError && e.message.includes(`'${STORIES}' has no chat template`),
      String(e),
    );
    return true;
  });
});

// `deno test` grants one set of permissions to every test file, so the network cannot be denied to this file
// alone. Instead every fetch transformers.js could make is replaced by one that records the request and fails.
Deno.test("loading never touches the network and leaves transformers.js with remote models off", async () => {
  const requests: string[] = [];
  const refuse = (url: string | URL | Request) => {
    requests.push(String(url instanceof Request ? url.url : url));
    return Promise.reject(new Error("network access in a test"));
  };
  const [envFetch, globalFetch] = [env.fetch, globalThis.fetch];
  env.fetch = refuse;
  globalThis.fetch = refuse;
  try {
    await loadTokenizer(STORIES);
    await withDir(TINY, (dir) => loadTokenizer(dir).then(() => {}));
    await rejectsNaming(loadTokenizer(join(STORIES, "missing")), "tokenizer.json");
    // A name that looks like a Hub model id is where transformers.js would otherwise send a Range request, even
    // with local_files_only; with the settings loadTokenizer made, it fails without one.
    await assert.rejects(
      AutoTokenizer.from_pretrained("flexora-test/no-such-model", { local_files_only: true }),
    );
    assert.deepEqual(requests, []);
    assert.equal(env.allowRemoteModels, false);
    assert.equal(env.useBrowserCache, false);
    assert.equal(env.useFSCache, false);
  } finally {
    env.fetch = envFetch;
    globalThis.fetch = globalFetch;
  }
});

Deno.test("text that starts with the BOS token (as chat templates write it) gets no second BOS", async () => {
  const tokenizer = await loadTokenizer(STORIES);
  const plain = tokenizer.encode("Once upon a time");
  const withBos = tokenizer.encode("<s>Once upon a time");
  assert.equal(plain[0], 1);
  assert.deepEqual(withBos.filter((id) => id === 1).length, 1, `ids ${withBos}`);
  assert.equal(withBos[0], 1);
});

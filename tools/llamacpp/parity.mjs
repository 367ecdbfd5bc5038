// llama.cpp's side of flexora's GGUF parity tests, run under Node.js (node-llama-cpp, installed by npm in this
// folder, ships llama.cpp's prebuilt CPU build; Deno cannot install it, see README.md here).
//
// stdin: {"runs": [{"model": FILE.gguf, "lora"?: FILE.gguf, "vocab": V, "sequences"?: [[ids]], "generate"?: {"prompt": [ids],
//          "tokens": N}, "tokenize"?: [text]}]}
// stdout: {"llamaCpp": {...versions}, "runs": [{"logits": [[[V floats] per position] per sequence],
//          "generated": [ids], "tokens": [[ids] per text], "bos": id, "addBos": bool}]}
//
// Logits are llama.cpp's raw next-token logits after every token of each sequence, evaluated in one batch on a
// fresh context; generation is llama.cpp's own greedy sampler (temperature 0) from the prompt, without stopping
// at end-of-text, so both engines produce exactly `tokens` ids.

import { getLlama } from "node-llama-cpp";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

/** Raw logits after each token of `ids`, as arrays of vocabulary size, from an empty sequence. */
async function logitsAfterEach(sequence, ids, vocab) {
  await sequence.clearHistory();
  const out = await sequence.controlledEvaluate(
    ids.map((id) => [id, { generateNext: { logits: true } }]),
  );
  return ids.map((_, i) => {
    const logits = out[i]?.next?.logits;
    if (!logits) {
      throw new Error(`llama.cpp returned no logits at position ${i}`);
    }
    const row = new Array(vocab).fill(null);
    for (const [token, logit] of logits) row[token] = logit;
    return row;
  });
}

/** llama.cpp's greedy continuation of `prompt`, `count` ids, from an empty sequence. */
async function greedy(sequence, prompt, count) {
  await sequence.clearHistory();
  const out = [];
  for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
    out.push(token);
    if (out.length === count) break;
  }
  return out;
}

async function run(llama, spec) {
  const model = await llama.loadModel({ modelPath: spec.model, gpuLayers: 0 });
  try {
    const longest = Math.max(8, ...(spec.sequences ?? []).map((s) => s.length));
    const needed = Math.max(
      longest,
      (spec.generate?.prompt.length ?? 0) + (spec.generate?.tokens ?? 0),
    );
    const size = Math.min(model.trainContextSize, Math.max(64, needed + 8));
    const context = await model.createContext({
      contextSize: size,
      batchSize: size,
      sequences: 1,
      threads: 2,
      // F32 attention throughout: llama.cpp's default F16 KV cache rounds keys and values (|Δ log p| ≈ 0.05 here)
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
      ...(spec.lora ? { lora: { adapters: [{ filePath: spec.lora, scale: 1 }] } } : {}),
    });
    try {
      const sequence = context.getSequence();
      const result = {
        bos: model.tokens.bos,
        addBos: model.tokens.shouldPrependBosToken,
        logits: [],
      };
      for (const ids of spec.sequences ?? []) {
        result.logits.push(await logitsAfterEach(sequence, ids, spec.vocab));
      }
      if (spec.generate) {
        result.generated = await greedy(
          sequence,
          spec.generate.prompt,
          spec.generate.tokens,
        );
      }
      result.tokens = (spec.tokenize ?? []).map((
        text,
      ) => [...model.tokenize(text)]);
      return result;
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

const request = await readStdin();
const llama = await getLlama({
  gpu: false,
  build: "never",
  logLevel: "error",
  progressLogs: false,
});
const runs = [];
for (const spec of request.runs) runs.push(await run(llama, spec));
process.stdout.write(
  JSON.stringify({
    llamaCpp: { build: llama.buildType, gpu: llama.gpu },
    runs,
  }),
);
await llama.dispose();

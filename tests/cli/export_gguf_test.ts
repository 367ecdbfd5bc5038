/**
 * `flexora export-gguf`: a model and an adapter written as GGUF and read back with `@huggingface/gguf`, the
 * plain-text output with the llama.cpp command line, and bad input.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { readGguf } from "../export/read_gguf.ts";
import { randomAdapter, tempDir } from "../export/variants.ts";
import { STORIES } from "../model/shared.ts";
import { flexora, flexoraJson, TINY } from "./run.ts";

const tmp = await tempDir("flexora-export-gguf-cli-");

Deno.test("export-gguf --json writes the model and reports what it wrote", async () => {
  const out = join(tmp, "stories.gguf");
  const r = await flexoraJson("export-gguf", "--model", STORIES, "--out", out, "--json");
  assert.deepEqual(r, {
    kind: "model",
    path: out,
    architecture: "llama",
    dtype: "F32",
    tensors: 47,
    bytes: (await Deno.stat(out)).size,
  });
  const file = await readGguf(out);
  assert.equal(file.metadata["general.type"], "model");
  assert.equal(file.tensors.size, 47);
});

Deno.test("export-gguf --adapter --dtype f16 writes the adapter and prints the llama-server command", async () => {
  const peft = await randomAdapter(
    STORIES,
    join(tmp, "peft"),
    { rank: 2, alpha: 4, rslora: false, targets: ["q_proj"], layers: [4] },
  );
  const out = join(tmp, "adapter.gguf");
  const r = await flexora(
    "export-gguf",
    "--model",
    STORIES,
    "--adapter",
    peft,
    "--out",
    out,
    "--dtype",
    "f16",
  );
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`^wrote ${out}: adapter, llama, F16, 2 tensors`));
  assert.ok(r.out.includes(`llama-server -m BASE.gguf --lora ${out}`), r.out);
  const file = await readGguf(out);
  assert.equal(file.metadata["general.type"], "adapter");
  assert.deepEqual([...file.tensors.values()].map((t) => t.dtype), ["F16", "F16"]);
});

Deno.test("export-gguf: bad usage exits 2, a model it cannot export exits 1, naming the problem", async () => {
  const missing = await flexora("export-gguf", "--model", STORIES);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /--out is required/);
  const dtype = await flexora(
    "export-gguf",
    "--model",
    STORIES,
    "--out",
    join(tmp, "x.gguf"),
    "--dtype",
    "q4",
  );
  assert.equal(dtype.code, 2);
  assert.match(dtype.err, /--dtype must be one of f32, f16, got 'q4'/);
  const tiny = await flexora("export-gguf", "--model", TINY, "--out", join(tmp, "x.gguf"));
  assert.equal(tiny.code, 1);
  assert.match(tiny.err, /tokenizer\.json: tokenizer model "WordLevel" has no llama\.cpp counterpart/);
  await assert.rejects(Deno.stat(join(tmp, "x.gguf")), Deno.errors.NotFound);
});

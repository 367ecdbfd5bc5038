/**
 * `flexora generate` on the real stories260K model: golden greedy output, seeded sampling, and bad input.
 */

import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STORIES } from "../model/shared.ts";
import { flexora, flexoraJson } from "./run.ts";

// Greedy decoding from [1] (../shared/README.md). Its first 15 ids are the golden encoding of LILY after BOS.
const GOLDEN =
  ("403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 " +
    "292 411 322 265 282 295 433 426 385").split(" ").map(Number);
const LILY = "Once upon a time, there was a little girl named Lily.";
const BASE = ["generate", "--model", STORIES, "--device", "cpu"];

Deno.test("generate --prompt-ids 1 --json gives the golden 32 greedy ids and their text", async () => {
  const out = await flexoraJson(...BASE, "--prompt-ids", "1", "--max-tokens", "32", "--json");
  assert.deepEqual(Object.keys(out), ["ids", "text"]);
  assert.deepEqual(out.ids, GOLDEN);
  assert.equal(typeof out.text, "string");
  assert.ok((out.text as string).startsWith(LILY), `text: ${out.text}`);
});

Deno.test("generate --dtype float16 gives the golden 32 ids too, and warns that the CPU emulates float16", async () => {
  const r = await flexora(...BASE, "--dtype", "float16", "--prompt-ids", "1", "--max-tokens", "32", "--json");
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out).ids, GOLDEN);
  assert.match(r.err, /warning: dtype float16 on the CPU is emulated .*: no faster than float32/);
});

Deno.test("generate --greedy equals the default and prints plain text without --json", async () => {
  const r = await flexora(...BASE, "--prompt-ids", "1", "--max-tokens", "15", "--greedy");
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, LILY);
});

Deno.test("generate --prompt TEXT encodes the prompt with BOS and continues it greedily", async () => {
  // The golden encoding of LILY is [1, ...GOLDEN.slice(0, 15)], so greedy continues with GOLDEN[15..].
  const out = await flexoraJson(...BASE, "--prompt", LILY, "--max-tokens", "17", "--json");
  assert.deepEqual(out.ids, GOLDEN.slice(15));
});

Deno.test("generate --max-tokens 0 generates nothing", async () => {
  const out = await flexoraJson(...BASE, "--prompt-ids", "1", "--max-tokens", "0", "--json");
  assert.deepEqual(out, { ids: [], text: "" });
});

Deno.test("sampling is deterministic for a seed and differs across seeds", async () => {
  const sample = async (seed: number) =>
    (await flexoraJson(
      ...BASE,
      ...["--prompt-ids", "1", "--max-tokens", "24", "--json"],
      ...["--temperature", "0.8", "--top-p", "0.9", "--seed", String(seed)],
    )).ids as number[];
  const first = await sample(3);
  assert.deepEqual(await sample(3), first);
  assert.ok(first.length > 0);
  const others = [await sample(1), await sample(2), await sample(4), await sample(5)];
  const distinct = new Set([first, ...others].map((ids) => ids.join(" ")));
  assert.ok(distinct.size > 1, `five seeds gave the same ${first.length} tokens`);
  assert.ok([first, ...others].some((ids) => ids.join(" ") !== GOLDEN.slice(0, ids.length).join(" ")));
});

/** Cases of bad input: arguments after BASE (unless `model` is false), exit code, and what stderr must say. */
const BAD: { name: string; args: string[]; model?: false; code: number; err: RegExp[] }[] = [
  {
    name: "missing --model",
    args: ["generate", "--prompt-ids", "1", "--max-tokens", "4", "--device", "cpu"],
    model: false,
    code: 2,
    err: [/--model is required/],
  },
  {
    name: "both --prompt and --prompt-ids",
    args: ["--prompt", "Once", "--prompt-ids", "1", "--max-tokens", "4"],
    code: 2,
    err: [/exactly one of --prompt and --prompt-ids/],
  },
  {
    name: "neither --prompt nor --prompt-ids",
    args: ["--max-tokens", "4"],
    code: 2,
    err: [/exactly one of --prompt and --prompt-ids/],
  },
  { name: "missing --max-tokens", args: ["--prompt-ids", "1"], code: 2, err: [/--max-tokens is required/] },
  {
    name: "--max-tokens=-1",
    args: ["--prompt-ids", "1", "--max-tokens=-1"],
    code: 2,
    err: [/--max-tokens must be an integer >= 0/, /got '-1'/],
  },
  {
    // parseArgs refuses a value that looks like an option; the message names the option and how to pass it.
    name: "--max-tokens -1",
    args: ["--prompt-ids", "1", "--max-tokens", "-1"],
    code: 2,
    err: [/--max-tokens/, /--max-tokens=-XYZ/],
  },
  {
    name: "--max-tokens 2.5",
    args: ["--prompt-ids", "1", "--max-tokens", "2.5"],
    code: 2,
    err: [/--max-tokens must be an integer/, /got '2.5'/],
  },
  {
    name: "--max-tokens abc",
    args: ["--prompt-ids", "1", "--max-tokens", "abc"],
    code: 2,
    err: [/--max-tokens must be an integer/, /got 'abc'/],
  },
  {
    name: "--temperature 0",
    args: ["--prompt-ids", "1", "--max-tokens", "4", "--temperature", "0"],
    code: 2,
    err: [/--temperature must be a number/, /got '0'/],
  },
  {
    name: "--top-p 1.5",
    args: ["--prompt-ids", "1", "--max-tokens", "4", "--top-p", "1.5"],
    code: 2,
    err: [/--top-p must be a number > 0 and <= 1/, /got '1.5'/],
  },
  {
    name: "--top-p 0",
    args: ["--prompt-ids", "1", "--max-tokens", "4", "--top-p", "0"],
    code: 2,
    err: [/--top-p must be a number/, /got '0'/],
  },
  {
    name: "--seed 1.5",
    args: ["--prompt-ids", "1", "--max-tokens", "4", "--temperature", "1", "--seed", "1.5"],
    code: 2,
    err: [/--seed must be an integer/, /got '1.5'/],
  },
  {
    name: "--dtype bfloat16",
    args: ["--prompt-ids", "1", "--max-tokens", "4", "--dtype", "bfloat16"],
    code: 2,
    err: [/--dtype must be one of float32, float16, got 'bfloat16'/],
  },
  {
    name: "--prompt-ids 1,x",
    args: ["--prompt-ids", "1,x", "--max-tokens", "4"],
    code: 2,
    err: [/--prompt-ids must be comma-separated token ids/, /got '1,x'/, /'x'/],
  },
  {
    name: "--prompt-ids with an id past the vocabulary",
    args: ["--prompt-ids", "1,512", "--max-tokens", "4"],
    code: 2,
    err: [/--prompt-ids has 512/, /vocabulary \(512\)/],
  },
  {
    name: "an unknown option",
    args: ["--prompt-ids", "1", "--max-tokens", "4", "--frobnicate"],
    code: 2,
    err: [/Unknown option '--frobnicate'/],
  },
  {
    name: "--device tpu",
    args: ["generate", "--model", STORIES, "--prompt-ids", "1", "--max-tokens", "4", "--device", "tpu"],
    model: false,
    code: 2,
    err: [/--device must be one of auto, cpu, webgpu, cuda/, /got 'tpu'/],
  },
];

for (const c of BAD) {
  Deno.test(`generate with ${c.name} exits ${c.code} and says why`, async () => {
    const r = await flexora(...(c.model === false ? c.args : [...BASE, ...c.args]));
    assert.equal(r.code, c.code, `exit code; stderr: ${r.err}`);
    assert.equal(r.out, "");
    assert.match(r.err, /^flexora generate: /);
    for (const re of c.err) assert.match(r.err, re);
  });
}

Deno.test("generate with a model folder that does not exist exits 1 and names the path", async () => {
  const missing = join(tmpdir(), `flexora-no-such-model-${crypto.randomUUID()}`);
  const r = await flexora(
    "generate",
    "--model",
    missing,
    "--prompt-ids",
    "1",
    "--max-tokens",
    "4",
    "--device",
    "cpu",
  );
  assert.equal(r.code, 1, r.err);
  assert.equal(r.out, "");
  assert.ok(r.err.includes(missing), r.err);
  assert.doesNotMatch(r.err, /^\s+at /m, "no stack trace without --debug");
});

Deno.test("--debug adds the stack trace to a runtime error", async () => {
  const missing = join(tmpdir(), `flexora-no-such-model-${crypto.randomUUID()}`);
  const r = await flexora(
    ...[
      "generate",
      "--model",
      missing,
      "--prompt-ids",
      "1",
      "--max-tokens",
      "4",
      "--device",
      "cpu",
      "--debug",
    ],
  );
  assert.equal(r.code, 1);
  assert.ok(r.err.includes(missing), r.err);
  assert.match(r.err, /^\s+at /m);
});

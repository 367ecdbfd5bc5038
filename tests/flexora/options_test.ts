import assert from "node:assert/strict";
import { defaultOptions, OptionsError, resolveOptions } from "../../src/flexora/options.ts";

Deno.test("defaults are the paper's: r 8, alpha 16, q/v, AdamW 1e-4, gates 0.01, retrain 3 cosine epochs, 10% warmup", () => {
  const o = resolveOptions();
  assert.deepEqual(o, defaultOptions());
  assert.deepEqual(o.search.lora, { rank: 8, alpha: 16, rslora: false, targets: ["q_proj", "v_proj"] });
  assert.equal(o.search.loraLr, 1e-4);
  assert.equal(o.search.gateLr, 0.01);
  assert.equal(o.retrain.epochs, 3);
  assert.equal(o.retrain.schedule, "cosine");
  assert.equal(o.retrain.warmupRatio, 0.1);
  assert.equal(o.retrain.batchSize, 8);
  assert.deepEqual(o.select, { kind: "positive" });
});

Deno.test("partial options merge into the defaults at every depth", () => {
  const o = resolveOptions({ search: { lora: { rank: 4 } }, retrain: { lr: 3e-4 }, select: "top-k:2" });
  assert.equal(o.search.lora.rank, 4);
  assert.equal(o.search.lora.alpha, 16);
  assert.equal(o.retrain.lr, 3e-4);
  assert.equal(o.retrain.epochs, 3);
  assert.deepEqual(o.select, { kind: "top-k", k: 2 });
});

const bad: [string, Parameters<typeof resolveOptions>[0], RegExp][] = [
  ["rank 0", { search: { lora: { rank: 0 } } }, /'search\.lora\.rank' must be a positive integer, got 0/],
  [
    "rank 2.5",
    { retrain: { lora: { rank: 2.5 } } },
    /'retrain\.lora\.rank' must be a positive integer, got 2\.5/,
  ],
  [
    "unknown method",
    { method: "dora" as "lora" },
    /'method' must be one of flexora, lora, random-k, got "dora"/,
  ],
  [
    "unknown target",
    { search: { lora: { targets: ["qkv_proj" as "q_proj"] } } },
    /'search\.lora\.targets' must be one of q_proj.*got "qkv_proj"/,
  ],
  ["no targets", { retrain: { lora: { targets: [] } } }, /'retrain\.lora\.targets' must be a non-empty list/],
  ["negative lr", { retrain: { lr: -1 } }, /'retrain\.lr' must be a positive number, got -1/],
  ["NaN gate lr", { search: { gateLr: NaN } }, /'search\.gateLr' must be a positive number, got null|NaN/],
  ["zero epochs", { search: { epochs: 0 } }, /'search\.epochs' must be a positive integer, got 0/],
  [
    "bad schedule",
    { retrain: { schedule: "step" as "cosine" } },
    /'retrain\.schedule' must be one of cosine, linear, constant, got "step"/,
  ],
  ["warmup ratio 2", { retrain: { warmupRatio: 2 } }, /'retrain\.warmupRatio' must be in \[0, 1\], got 2/],
  ["unknown option", { lerning_rate: 1 } as never, /'lerning_rate' must be one of the options/],
  [
    "bad hypergradient",
    { search: { hypergradient: "exact" as "unrolled" } },
    /'search\.hypergradient' must be one of first-order, unrolled, got "exact"/,
  ],
];
for (const [name, input, message] of bad) {
  Deno.test(`options: ${name} is refused before anything runs`, () => {
    assert.throws(
      () => resolveOptions(input),
      (e) =>
        e instanceof OptionsError && /^Cannot start training: /.test(e.message) && message.test(e.message),
    );
  });
}

Deno.test("an unknown selection form names the value", () => {
  assert.throws(() => resolveOptions({ select: "top-3" }), /unknown selection 'top-3'/);
});

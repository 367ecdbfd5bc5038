import assert from "node:assert/strict";
import { join } from "node:path";
import { defaultOptions, OptionsError, resolveOptions } from "../../src/flexora/options.ts";
import { checkFit, estimateRun, planFinetune, type RunFacts } from "../../src/flexora/plan.ts";
import { readConfig } from "../../src/model/config.ts";
import { ROOT } from "../model/shared.ts";

const TINY = join(ROOT, "fixtures/tiny-llama"), DATA = join(ROOT, "fixtures/tiny-data");

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

Deno.test("a fractional search.epochs searches on that share of an epoch's batches", async () => {
  const o = resolveOptions({ search: { epochs: 0.25 } });
  const facts: RunFacts = { config: await readConfig(TINY), trainExamples: 800, validationExamples: 50 };
  assert.equal(estimateRun(o, facts).steps.search, 25, "0.25 of 100 batches");
  assert.throws(
    () => resolveOptions({ search: { epochs: 0 } }),
    /'search\.epochs' must be a number in \(0, 1000\], got 0/,
  );
});

Deno.test("the search's LoRA learning rate follows the retraining's unless given", () => {
  assert.equal(resolveOptions({ retrain: { lr: 1e-3 } }).search.loraLr, 1e-3);
  assert.equal(resolveOptions({ retrain: { lr: 1e-3 }, search: { loraLr: 5e-4 } }).search.loraLr, 5e-4);
  assert.equal(resolveOptions({ search: { loraLr: 5e-4 } }).retrain.lr, 1e-4);
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
    /'search\.lora\.targets\.0' must be one of q_proj.*got "qkv_proj"/,
  ],
  ["no targets", { retrain: { lora: { targets: [] } } }, /'retrain\.lora\.targets' must be a non-empty list/],
  ["negative lr", { retrain: { lr: -1 } }, /'retrain\.lr' must be a positive number, got -1/],
  ["NaN gate lr", { search: { gateLr: NaN } }, /'search\.gateLr' must be a positive number, got null|NaN/],
  ["zero epochs", { search: { epochs: 0 } }, /'search\.epochs' must be a number in \(0, 1000\], got 0/],
  [
    "bad schedule",
    { retrain: { schedule: "step" as "cosine" } },
    /'retrain\.schedule' must be one of cosine, linear, constant, got "step"/,
  ],
  ["warmup ratio 2", { retrain: { warmupRatio: 2 } }, /'retrain\.warmupRatio' must be in \[0, 1\], got 2/],
  [
    "unknown option",
    { lerning_rate: 1 } as never,
    /'lerning_rate' is not an option \(options there: method, search/,
  ],
  [
    "unknown search option",
    { search: { lr: 1 } } as never,
    /'search\.lr' is not an option \(options there: lora, loraLr/,
  ],
  [
    "micro-batch not dividing the batch",
    { retrain: { batchSize: 8, microBatchSize: 3 } },
    /'retrain\.microBatchSize' must be a divisor of retrain\.batchSize \(8\), got 3/,
  ],
  [
    "micro-batch above the batch",
    { retrain: { batchSize: 4, microBatchSize: 8 } },
    /'retrain\.microBatchSize' must be at most retrain\.batchSize \(4\), got 8/,
  ],
  [
    "an unknown selection rule",
    { select: "bogus-rule" },
    /'select' must be a rule: positive, top-k:K, validation:K .*, got "bogus-rule"/,
  ],
  ["top-k:0", { select: "top-k:0" }, /'select' must be a rule: .*, got "top-k:0"/],
  ["threshold:abc", { select: "threshold:abc" }, /'select' must be a rule: .*, got "threshold:abc"/],
  [
    "random-k with the default rule",
    { method: "random-k" },
    /'select' must be top-k:K with method random-k .*, got "positive"/,
  ],
  [
    "random-k with a threshold",
    { method: "random-k", select: "threshold:0" },
    /'select' must be top-k:K .*, got "threshold:0"/,
  ],
  ["max length 1", { maxLength: 1 }, /'maxLength' must be an integer >= 2, got 1/],
  [
    "1e9 search epochs",
    { search: { epochs: 1e9 } },
    /'search\.epochs' must be a number in \(0, 1000\], got 1000000000/,
  ],
  ["a string seed", { seed: "1" as unknown as number }, /'seed' must be an integer, got "1"/],
  ["infinite lr", { retrain: { lr: Infinity } }, /'retrain\.lr' must be a positive number, got Infinity/],
  [
    "bad hypergradient",
    { search: { hypergradient: "exact" as "unrolled" } },
    /'search\.hypergradient' must be one of first-order, unrolled, got "exact"/,
  ],
  [
    "bad gate form",
    { search: { gateForm: "squared" as "cubed" } },
    /'search\.gateForm' must be one of linear, cubed, got "squared"/,
  ],
  [
    "bad gate normalization",
    { search: { gateNormalization: "global" as "shared" } },
    /'search\.gateNormalization' must be one of per-layer, shared, got "global"/,
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

Deno.test("an option error carries the option's path", () => {
  const e = (() => {
    try {
      resolveOptions({ retrain: { lora: { rank: 0 } } });
    } catch (e) {
      return e;
    }
  })();
  assert.ok(e instanceof OptionsError);
  assert.equal(e.option, "retrain.lora.rank");
});

const fits: [string, Parameters<typeof resolveOptions>[0], Partial<RunFacts>, RegExp][] = [
  [
    "rank past the model's widths",
    { retrain: { lora: { rank: 1e9 } } },
    {},
    /'retrain\.lora\.rank' must be at most 16 \(the smallest width of q_proj, v_proj in this model\), got 1000000000/,
  ],
  [
    "a validation size past the data",
    { valSize: 64 },
    { validationExamples: null },
    /'valSize' must be less than the 64 training examples .*, got 64/,
  ],
  [
    "too many steps",
    { retrain: { epochs: 1000, batchSize: 1 } },
    { trainExamples: 10_000 },
    /'retrain\.epochs' must be at most 100 for this data \(1000000 steps of retrain\.batchSize 1 over 10000 examples\), got 1000/,
  ],
];
for (const [name, input, facts, message] of fits) {
  Deno.test(`options against the model and data: ${name} is refused`, async () => {
    const config = await readConfig(TINY);
    assert.throws(
      () => checkFit(resolveOptions(input), { config, trainExamples: 64, validationExamples: 16, ...facts }),
      (e) => e instanceof OptionsError && message.test(e.message),
    );
  });
}

Deno.test("planFinetune reads the model config and the data, checks them, and estimates steps and memory", async () => {
  const plan = await planFinetune(TINY, DATA, { search: { batchSize: 4 }, retrain: { epochs: 2 } });
  assert.equal(plan.facts.trainExamples, 64);
  assert.equal(plan.facts.validationExamples, 16);
  assert.deepEqual(plan.estimate.steps, { search: 16, retrain: 16, total: 32 });
  assert.ok(plan.estimate.memoryBytes > plan.estimate.weightsBytes && plan.estimate.weightsBytes > 0);
  // Twice the sequence length costs more activation memory; float16 halves the weights.
  const longer = await planFinetune(TINY, DATA, { maxLength: 1024 });
  assert.ok(longer.estimate.memoryBytes > plan.estimate.memoryBytes);
  const half = await planFinetune(TINY, DATA, { dtype: "float16" });
  assert.equal(half.estimate.weightsBytes * 2, plan.estimate.weightsBytes);
});

import assert from "node:assert/strict";
import { makeSchedule } from "../../src/train/schedule.ts";

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-15, `${a} != ${b}`);

Deno.test("cosine schedule: linear warmup, peak, half-way at half the peak, zero at the end", () => {
  const lr = makeSchedule({ kind: "cosine", lr: 2e-4, totalSteps: 110, warmupSteps: 10 });
  close(lr(0), 0);
  close(lr(5), 1e-4);
  close(lr(10), 2e-4);
  close(lr(60), 1e-4);
  close(lr(110), 0);
  close(lr(200), 0);
  for (let s = 11; s <= 110; s++) assert.ok(lr(s) <= lr(s - 1), `not decreasing at ${s}`);
});

Deno.test("linear schedule decays to zero; warmupRatio rounds up like Hugging Face", () => {
  const lr = makeSchedule({ kind: "linear", lr: 1, totalSteps: 100, warmupRatio: 0.1 });
  close(lr(10), 1);
  close(lr(55), 0.5);
  close(lr(100), 0);
  const odd = makeSchedule({ kind: "linear", lr: 1, totalSteps: 15, warmupRatio: 0.1 });
  close(odd(1), 0.5); // ceil(1.5) = 2 warmup steps
});

Deno.test("constant schedule holds the peak after warmup", () => {
  const lr = makeSchedule({ kind: "constant", lr: 0.01, warmupSteps: 4 });
  close(lr(2), 0.005);
  close(lr(4), 0.01);
  close(lr(10_000), 0.01);
});

Deno.test("schedule configs are validated with the offending value", () => {
  assert.throws(() => makeSchedule({ kind: "cosine", lr: 1e-4 }), /needs 'totalSteps' .* got undefined/);
  assert.throws(() => makeSchedule({ kind: "linear", lr: -1, totalSteps: 3 }), /'lr' must be .* got -1/);
  assert.throws(
    () => makeSchedule({ kind: "step" as "linear", lr: 1, totalSteps: 3 }),
    /unknown schedule kind 'step'/,
  );
  assert.throws(
    () => makeSchedule({ kind: "constant", lr: 1, warmupRatio: 2 }),
    /'warmupRatio' must be in \[0, 1\], got 2/,
  );
});

import assert from "node:assert/strict";
import { formatSelection, parseSelection, selectLayers } from "../../src/flexora/select.ts";

const LOGITS = [0.3, -0.2, 0.05, -0.01, 0.8, 0];

Deno.test("default rule keeps layers whose logit rose above 0, ranked by logit", () => {
  const s = selectLayers(LOGITS);
  assert.deepEqual(s.layers, [0, 2, 4]);
  assert.deepEqual(s.ranking, [4, 0, 2, 5, 3, 1]);
  assert.equal(s.warning, undefined);
});

Deno.test("top-k and threshold rules", () => {
  assert.deepEqual(selectLayers(LOGITS, parseSelection("top-k:2")).layers, [0, 4]);
  assert.deepEqual(selectLayers(LOGITS, parseSelection("top-k:99")).layers, [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(selectLayers(LOGITS, parseSelection("threshold:0.1")).layers, [0, 4]);
  assert.deepEqual(selectLayers(LOGITS, parseSelection("threshold:-0.05")).layers, [0, 2, 3, 4, 5]);
});

Deno.test("validation:K lists the gate-ranked prefixes of 1..K layers as candidates; the largest is the placeholder", () => {
  const rule = parseSelection("validation:3");
  assert.deepEqual(rule, { kind: "validation", k: 3 });
  assert.equal(formatSelection(rule), "validation:3");
  const s = selectLayers(LOGITS, rule);
  assert.deepEqual(s.candidates, [[4], [0, 4], [0, 2, 4]]);
  assert.deepEqual(s.layers, [0, 2, 4]);
  assert.equal(selectLayers([0.1, 0.2], parseSelection("validation:5")).candidates?.length, 2);
});

Deno.test("an empty selection falls back to the top-ranked layer with a warning", () => {
  const s = selectLayers([-0.1, -0.4, -0.05]);
  assert.deepEqual(s.layers, [2]);
  assert.match(s.warning!, /rule positive kept no layer; keeping the top-ranked layer 2/);
});

Deno.test("bad selection forms and diverged logits are errors naming the value", () => {
  for (
    const bad of [
      "top-k:0",
      "top-k:1.5",
      "top-k",
      "threshold:x",
      "best",
      "top-k:2:3",
      "validation:0",
      "validation",
    ]
  ) {
    assert.throws(() => parseSelection(bad), new RegExp(`unknown selection '${bad}'`));
  }
  assert.throws(() => selectLayers([0.1, NaN]), /gate logit of layer 1 is NaN/);
});

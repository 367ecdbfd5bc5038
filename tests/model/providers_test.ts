import assert from "node:assert/strict";
import { join } from "node:path";
import { finetune } from "../../src/flexora/pipeline.ts";
import { buildScoringGraph } from "../../src/model/graphs.ts";
import { loadModel } from "../../src/model/model.ts";
import { ROOT } from "./shared.ts";

const TINY = join(ROOT, "fixtures/tiny-llama");

Deno.test("a model's sessions run on the providers it was loaded with, unless a call names others", async () => {
  assert.deepEqual((await loadModel(TINY)).providers, ["cpu"]);
  const model = await loadModel(TINY, { providers: ["no-such-provider"] });
  assert.deepEqual(model.providers, ["no-such-provider"]);
  const built = buildScoringGraph(model.config, model.weights);
  await assert.rejects(() => model.session(built), /no-such-provider/);
  const session = await model.session(built, { providers: ["cpu"] });
  await session.release();
});

Deno.test("finetune trains on the model's providers (the device the CLI and the sidecar resolved)", async () => {
  const model = await loadModel(TINY, { providers: ["no-such-provider"] });
  await assert.rejects(
    () => finetune(model, join(ROOT, "fixtures/tiny-data"), { maxLength: 64, checkpointEvery: 0 }),
    /no-such-provider/,
  );
});

/**
 * Training and evaluation data: rows of several forms normalized to {@link Example}s, datasets of split files or
 * benchmark folders, tokenization with truncation, and seeded length-bucketed batches.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { loadTokenizer } from "../model/tokenizer.ts";
 * import { BatchPlan, loadDataset, tokenizeExamples } from "./mod.ts";
 * const fixtures = new URL("../../fixtures/", import.meta.url);
 * const data = await loadDataset(fileURLToPath(new URL("tiny-data", fixtures)));
 * const tokenizer = await loadTokenizer(fileURLToPath(new URL("tiny-llama", fixtures)));
 * const { sequences } = tokenizeExamples(data.train, tokenizer, { maxLength: 64, appendEos: true });
 * const plan = new BatchPlan(sequences, { batchSize: 8, seed: 0 });
 * if (plan.epoch(0).flat().length !== sequences.length) throw new Error("every sequence once per epoch");
 * ```
 *
 * @module
 */

export { DataError, type JsonlRow, parseJsonl, readJsonl } from "./jsonl.ts";
export { alpacaPrompt, type Example, toExample } from "./example.ts";
export { carveValidation, type Dataset, loadDataset } from "./dataset.ts";
export {
  type BenchmarkName,
  type BenchmarkReader,
  BENCHMARKS,
  readBoolq,
  readHellaswag,
  readPiqa,
  readWinogrande,
  type Splits,
} from "./benchmarks.ts";
export { bunzip2, DataFiles } from "./files.ts";
export { type TokenizedSet, tokenizeExamples, type TokenizeOptions } from "./tokenize.ts";
export { BatchPlan, type BatchPlanOptions, WINDOW_BATCHES } from "./batches.ts";
export { batchFeeds, countTargets, microBatches, type Sequence, targetCount } from "./sequence.ts";

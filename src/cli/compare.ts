/**
 * `flexora compare`: Flexora, all-layer LoRA and random-k (as many seeded random layers as Flexora chose) on the
 * same model, data and settings, in one table.
 *
 * @module
 */

import { loadDataset } from "../data/dataset.ts";
import { finetune, type FinetuneResult } from "../flexora/pipeline.ts";
import { requireString } from "./args.ts";
import type { Command } from "./command.ts";
import { finetuneCommand, finetuneInput } from "./finetune.ts";
import { MODEL_HELP, MODEL_OPTIONS, openModel } from "./model_options.ts";
import { progressReporter } from "./progress.ts";

/** One row of the comparison. */
export interface CompareRow {
  readonly method: string;
  readonly testAccuracy: number | null;
  readonly testLoss: number | null;
  readonly trainableParams: number;
  readonly layers: number[];
  readonly seconds: Record<string, number>;
}

/** The comparison row of a finetune result. */
export function compareRow(r: FinetuneResult): CompareRow {
  const test = r.retrain.epochs.at(-1)?.test;
  return {
    method: r.method,
    testAccuracy: test?.accuracy ?? null,
    testLoss: test?.loss ?? null,
    trainableParams: r.trainableParams,
    layers: r.layers,
    seconds: r.timings,
  };
}

/** The rows as an aligned text table. */
export function formatTable(rows: readonly CompareRow[]): string {
  const head = ["method", "test acc", "test loss", "params", "layers", "search s", "retrain s"];
  const body = rows.map((r) => [
    r.method,
    r.testAccuracy === null ? "-" : r.testAccuracy.toFixed(4),
    r.testLoss === null ? "-" : r.testLoss.toFixed(4),
    String(r.trainableParams),
    r.layers.join(","),
    r.seconds.search === undefined ? "-" : r.seconds.search.toFixed(1),
    r.seconds.retrain.toFixed(1),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [head, ...body].map((cells) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join(
    "\n",
  );
}

const SHARED = Object.fromEntries(
  Object.entries(finetuneCommand.options).filter(([k]) =>
    !["out", "method", "resume", "pad-layers", "checkpoint-dir"].includes(k)
  ),
);

export const compareCommand: Command = {
  name: "compare",
  summary: "run flexora, all-layer LoRA and random-k on the same data and print a table",
  usage: "--model DIR|ID --data DATASET [finetune options] [--json]",
  options: { ...MODEL_OPTIONS, ...SHARED },
  help: Object.fromEntries(Object.keys(SHARED).map((k) => [k, finetuneCommand.help[k] ?? MODEL_HELP[k]])),
  async run(values, _positionals, io) {
    const { model } = await openModel({ ...values, model: requireString(values, "model") }, io);
    const data = await loadDataset(requireString(values, "data"), { tokenizer: model.tokenizer });
    const input = finetuneInput(values, false);
    const hooks = { onProgress: progressReporter(io), onWarning: (w: string) => io.err(`warning: ${w}`) };
    const flexora = await finetune(model, data, { ...input, method: "flexora" }, hooks);
    const lora = await finetune(model, data, { ...input, method: "lora" }, hooks);
    const randomK = await finetune(model, data, {
      ...input,
      method: "random-k",
      select: `top-k:${flexora.layers.length}`,
    }, hooks);
    const rows = [flexora, lora, randomK].map(compareRow);
    io.out(values.json ? JSON.stringify(rows) : formatTable(rows));
    return 0;
  },
};

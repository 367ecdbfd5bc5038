/**
 * `flexora score`: multiple-choice accuracy, or completion perplexity, of a JSONL file.
 *
 * @module
 */

import { DataError, readJsonl } from "../data/jsonl.ts";
import { buildScoringGraph } from "../model/graphs.ts";
import { type ChoiceRow, type CompletionRow, Scorer } from "../flexora/score.ts";
import { requireString } from "./args.ts";
import type { Command } from "./command.ts";
import { MODEL_HELP, MODEL_OPTIONS, openModel } from "./model_options.ts";

/** Splits rows into multiple-choice or completion rows; a row of neither form is a DataError naming file:line. */
export function classifyRows(
  file: string,
  rows: { line: number; value: unknown }[],
): ChoiceRow[] | CompletionRow[] {
  if (rows.length === 0) throw new DataError(`${file}: no rows`);
  const choice: ChoiceRow[] = [], completion: CompletionRow[] = [];
  for (const { line, value } of rows) {
    const r = value as Record<string, unknown>;
    const where = `${file}:${line}`;
    if (typeof r !== "object" || r === null || typeof r.prompt !== "string") {
      throw new DataError(`${where}: expected an object with a string 'prompt'`);
    }
    if (Array.isArray(r.choices)) {
      if (r.choices.length < 2 || !r.choices.every((c) => typeof c === "string")) {
        throw new DataError(`${where}: 'choices' must be at least two strings`);
      }
      if (
        r.label !== undefined &&
        !(Number.isInteger(r.label) && (r.label as number) >= 0 && (r.label as number) < r.choices.length)
      ) {
        throw new DataError(
          `${where}: 'label' must index 'choices' (0..${r.choices.length - 1}), got ${
            JSON.stringify(r.label)
          }`,
        );
      }
      choice.push({ prompt: r.prompt, choices: r.choices as string[], label: r.label as number | undefined });
    } else if (typeof r.completion === "string") {
      completion.push({ prompt: r.prompt, completion: r.completion });
    } else {
      throw new DataError(`${where}: expected 'choices' (multiple choice) or a string 'completion'`);
    }
  }
  if (choice.length && completion.length) {
    throw new DataError(`${file}: mixes multiple-choice and completion rows; score them in separate files`);
  }
  return choice.length ? choice : completion;
}

export const scoreCommand: Command = {
  name: "score",
  summary: "score a JSONL file: multiple-choice accuracy, or completion perplexity",
  usage: "--model DIR|ID --data FILE.jsonl [--adapter DIR] [--device D] [--dtype T] [--json]",
  options: { ...MODEL_OPTIONS, data: { type: "string" } },
  help: {
    ...MODEL_HELP,
    data: "FILE  rows {prompt, choices, label} (accuracy) or {prompt, completion} (perplexity)",
  },
  async run(values, _positionals, io) {
    const file = requireString(values, "data");
    const rows = classifyRows(file, await readJsonl(file));
    const { model, adapterSpec, adapterInputs, warning } = await openModel(values, io);
    if (warning) io.err(`warning: ${warning}`);
    const session = await model.session(buildScoringGraph(model.config, model.weights, adapterSpec));
    const scorer = new Scorer(session, model.tokenizer, { adapterInputs });
    if ("choices" in rows[0]) {
      const result = await scorer.multipleChoice(rows as ChoiceRow[]);
      io.out(
        values.json ? JSON.stringify(result) : `accuracy ${result.accuracy.toFixed(4)} on ${result.n} rows`,
      );
    } else {
      const result = await scorer.completions(rows as CompletionRow[]);
      io.out(
        values.json
          ? JSON.stringify(result)
          : `nll ${result.nll.toFixed(4)}, perplexity ${
            result.perplexity.toFixed(3)
          } over ${result.tokens} tokens`,
      );
    }
    await session.release();
    return 0;
  },
};

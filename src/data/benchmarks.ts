/**
 * Standard multiple-choice benchmarks in their original formats, read as multiple-choice {@link Example}s whose
 * completion is the correct choice. Every choice continues the same prompt, so a choice's log-likelihood given
 * the prompt can be compared across choices.
 *
 * | benchmark  | prompt                                          | choices                               |
 * | ---------- | ----------------------------------------------- | ------------------------------------- |
 * | PIQA       | `Question: ${goal}\nAnswer:`                    | `" " + sol1`, `" " + sol2`            |
 * | WinoGrande | the sentence before `_`, trailing spaces cut    | those spaces + option_i + the rest    |
 * | BoolQ      | `${passage}\nQuestion: ${question}?\nAnswer:`   | `" no"`, `" yes"`                     |
 * | HellaSwag  | the context line                                | `" " + ending_i`                      |
 *
 * @example
 * ```ts
 * import { readBoolq } from "./benchmarks.ts";
 * const file = `${await Deno.makeTempDir()}/dev.jsonl`; // one row of BoolQ's dev.jsonl, as it is published
 * const row = { question: "is the sky blue", passage: "The sky is blue.", answer: true };
 * await Deno.writeTextFile(file, JSON.stringify(row) + "\n");
 * const [example] = await readBoolq(file);
 * if (example.prompt !== "The sky is blue.\nQuestion: is the sky blue?\nAnswer:") throw new Error(example.prompt);
 * if (example.completion !== " yes" || example.choices?.[example.label!] !== " yes") throw new Error("completion");
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { type Example, show } from "./example.ts";
import { DataFiles } from "./files.ts";
import { DataError, type JsonlRow } from "./jsonl.ts";

/** The benchmarks {@link BENCHMARKS} can read. */
export type BenchmarkName = "piqa" | "winogrande" | "boolq" | "hellaswag";

/** The splits of a dataset. */
export interface Splits {
  readonly train: Example[];
  readonly validation: Example[] | null;
  readonly test: Example[] | null;
}

/** Reads one benchmark's folder layout. */
export interface BenchmarkReader {
  readonly name: BenchmarkName;
  /** Whether folder `dir`, which holds the files `names`, is in this benchmark's layout. */
  matches(dir: string, names: ReadonlySet<string>): Promise<boolean>;
  /** The labelled evaluation set as `test`; the training file, when the folder has one, as `train` (else []). */
  read(dir: string, names: ReadonlySet<string>, files: DataFiles): Promise<Splits>;
}

/** The string field `key` of a benchmark row (a {@link DataError} naming `source` otherwise). */
function field(row: JsonlRow, key: string, file: string): string {
  const value = (row.value as Record<string, unknown> | null)?.[key];
  if (typeof value !== "string") {
    throw new DataError(`${file}:${row.line}: '${key}' must be a string, got ${show(value)}`);
  }
  return value;
}

/** A multiple-choice example whose completion is the correct choice. */
function choice(prompt: string, choices: string[], label: number, source: string): Example {
  return { prompt, completion: choices[label], choices, label, source };
}

/** Integer labels, one per non-blank line of `file` (`.lst`), with their line numbers. */
async function readLabels(file: string, files: DataFiles): Promise<{ line: number; value: number }[]> {
  const out: { line: number; value: number }[] = [];
  (await files.text(file)).split("\n").forEach((raw, i) => {
    const text = raw.trim();
    if (text === "") return;
    if (!/^-?\d+$/.test(text)) {
      throw new DataError(`${file}:${i + 1}: expected an integer label, got ${show(text)}`);
    }
    out.push({ line: i + 1, value: Number(text) });
  });
  return out;
}

/** Labels aligned with `rows` (a {@link DataError} when the counts differ). */
async function alignedLabels(rows: JsonlRow[], file: string, labelsFile: string, files: DataFiles) {
  const labels = await readLabels(labelsFile, files);
  if (labels.length !== rows.length) {
    throw new DataError(`${labelsFile}: ${labels.length} labels for the ${rows.length} rows of ${file}`);
  }
  return labels;
}

/** PIQA: `{goal, sol1, sol2}` rows and a `.lst` of 0/1 labels, line by line. */
export async function readPiqa(
  file: string,
  labelsFile: string,
  files: DataFiles = new DataFiles(),
): Promise<Example[]> {
  const rows = await files.jsonl(file);
  const labels = await alignedLabels(rows, file, labelsFile, files);
  return rows.map((row, i) => {
    const { line, value } = labels[i];
    if (value !== 0 && value !== 1) {
      throw new DataError(`${labelsFile}:${line}: label must be 0 or 1, got ${value}`);
    }
    const choices = [` ${field(row, "sol1", file)}`, ` ${field(row, "sol2", file)}`];
    return choice(`Question: ${field(row, "goal", file)}\nAnswer:`, choices, value, `${file}:${row.line}`);
  });
}

/**
 * WinoGrande: `{sentence, option1, option2, answer}` rows, `answer` "1" or "2"; `labelsFile` (1 or 2 per line)
 * supplies answers the rows lack and must agree with those they have.
 */
export async function readWinogrande(
  file: string,
  labelsFile?: string,
  files: DataFiles = new DataFiles(),
): Promise<Example[]> {
  const rows = await files.jsonl(file);
  const labels = labelsFile === undefined ? null : await alignedLabels(rows, file, labelsFile, files);
  return rows.map((row, i) => {
    const source = `${file}:${row.line}`, sentence = field(row, "sentence", file);
    const blank = sentence.indexOf("_");
    if (blank < 0 || sentence.indexOf("_", blank + 1) >= 0) {
      throw new DataError(`${source}: 'sentence' must contain exactly one '_', got ${show(sentence)}`);
    }
    const before = sentence.slice(0, blank), prompt = before.trimEnd(), gap = before.slice(prompt.length);
    const rest = sentence.slice(blank + 1);
    const choices = [1, 2].map((k) => gap + field(row, `option${k}`, file) + rest);
    const raw = (row.value as Record<string, unknown>).answer;
    const given = raw === undefined || raw === "" ? null : Number(raw);
    if (given !== null && given !== 1 && given !== 2) {
      throw new DataError(`${source}: 'answer' must be "1" or "2", got ${show(raw)}`);
    }
    const listed = labels?.[i].value ?? null;
    if (listed !== null && listed !== 1 && listed !== 2) {
      throw new DataError(`${labelsFile}:${labels![i].line}: label must be 1 or 2, got ${listed}`);
    }
    if (given !== null && listed !== null && given !== listed) {
      throw new DataError(
        `${source}: 'answer' ${given} disagrees with ${labelsFile}:${labels![i].line} (${listed})`,
      );
    }
    const answer = given ?? listed;
    if (answer === null) throw new DataError(`${source}: no 'answer' and no labels file`);
    return choice(prompt, choices, answer - 1, source);
  });
}

/** BoolQ: `{question, passage, answer}` rows, `answer` a boolean. */
export async function readBoolq(file: string, files: DataFiles = new DataFiles()): Promise<Example[]> {
  return (await files.jsonl(file)).map((row) => {
    const source = `${file}:${row.line}`, answer = (row.value as Record<string, unknown>).answer;
    if (typeof answer !== "boolean") {
      throw new DataError(`${source}: 'answer' must be a boolean, got ${show(answer)}`);
    }
    const prompt = `${field(row, "passage", file)}\nQuestion: ${field(row, "question", file)}?\nAnswer:`;
    return choice(prompt, [" no", " yes"], answer ? 1 : 0, source);
  });
}

/** HellaSwag: bzip2 text, 6 lines per item (context, gold index 0-3, four endings); sources `file#item` (1-based). */
export async function readHellaswag(file: string, files: DataFiles = new DataFiles()): Promise<Example[]> {
  const lines = (await files.text(file)).split("\n").map((l) => l.replace(/\r$/, ""));
  if (lines.at(-1) === "") lines.pop();
  if (lines.length % 6 !== 0) {
    throw new DataError(`${file}: ${lines.length} lines, not 6 per item (context, gold index, four endings)`);
  }
  const out: Example[] = [];
  for (let i = 0; i < lines.length; i += 6) {
    const source = `${file}#${i / 6 + 1}`, gold = lines[i + 1];
    if (!/^[0-3]$/.test(gold)) throw new DataError(`${source}: gold index must be 0-3, got ${show(gold)}`);
    out.push(choice(lines[i], lines.slice(i + 2, i + 6).map((e) => ` ${e}`), Number(gold), source));
  }
  return out;
}

/** The first line of JSON Lines `file` as an object, or null if it is missing or not one. */
async function firstRow(file: string): Promise<Record<string, unknown> | null> {
  const text = await Deno.readTextFile(file).catch(() => "");
  try {
    const end = text.indexOf("\n");
    const value = JSON.parse(end < 0 ? text : text.slice(0, end));
    return typeof value === "object" && value !== null ? value : null;
  } catch {
    return null;
  }
}

const WINOGRANDE_TRAIN = ["train_xl", "train_l", "train_m", "train_s", "train_xs"];

/** Each benchmark's layout, tried in this order by `loadDataset`. */
export const BENCHMARKS: readonly BenchmarkReader[] = [
  {
    name: "hellaswag",
    matches: (_dir, names) => Promise.resolve(names.has("hellaswag_val_full.txt.bz2")),
    read: async (dir, _names, files) => ({
      train: [],
      validation: null,
      test: await readHellaswag(join(dir, "hellaswag_val_full.txt.bz2"), files),
    }),
  },
  {
    name: "piqa",
    matches: (_dir, names) => Promise.resolve(names.has("valid.jsonl") && names.has("valid-labels.lst")),
    read: async (dir, names, files) => {
      const train = names.has("train.jsonl") && names.has("train-labels.lst")
        ? await readPiqa(join(dir, "train.jsonl"), join(dir, "train-labels.lst"), files)
        : [];
      return {
        train,
        validation: null,
        test: await readPiqa(join(dir, "valid.jsonl"), join(dir, "valid-labels.lst"), files),
      };
    },
  },
  {
    name: "winogrande",
    matches: (_dir, names) =>
      Promise.resolve(names.has("dev-labels.lst") || WINOGRANDE_TRAIN.some((t) => names.has(`${t}.jsonl`))),
    read: async (dir, names, files) => {
      const read = (base: string) =>
        readWinogrande(
          join(dir, `${base}.jsonl`),
          names.has(`${base}-labels.lst`) ? join(dir, `${base}-labels.lst`) : undefined,
          files,
        );
      const trainBase = WINOGRANDE_TRAIN.find((t) => names.has(`${t}.jsonl`));
      const train = trainBase === undefined ? [] : await read(trainBase);
      return { train, validation: null, test: names.has("dev.jsonl") ? await read("dev") : null };
    },
  },
  {
    name: "boolq",
    matches: async (dir, names) => {
      if (!names.has("dev.jsonl")) return false;
      const row = await firstRow(join(dir, "dev.jsonl"));
      return row !== null && "passage" in row && "question" in row && typeof row.answer === "boolean";
    },
    read: async (dir, names, files) => {
      const train = names.has("train.jsonl") ? await readBoolq(join(dir, "train.jsonl"), files) : [];
      return { train, validation: null, test: await readBoolq(join(dir, "dev.jsonl"), files) };
    },
  },
];

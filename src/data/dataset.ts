/**
 * Datasets: a JSON Lines file, a folder of split files, or a benchmark folder, read into {@link Example}s.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { carveValidation, loadDataset } from "./dataset.ts";
 * const data = await loadDataset(fileURLToPath(new URL("../../fixtures/tiny-data", import.meta.url)));
 * const { train, validation } = carveValidation(data.train, 10, 0);
 * if (train.length + validation.length !== data.train.length) throw new Error("a carve keeps every example");
 * ```
 *
 * @module
 */

import { basename, extname, join, resolve } from "node:path";
import type { Tokenizer } from "../model/tokenizer.ts";
import { Rng } from "../util/random.ts";
import { BENCHMARKS, type Splits } from "./benchmarks.ts";
import { type Example, toExample } from "./example.ts";
import { DataFiles } from "./files.ts";
import { DataError } from "./jsonl.ts";

/** A dataset's splits, where they came from, and a hash that identifies them. */
export interface Dataset {
  /** The folder's or file's base name (a file's without its extension). */
  readonly name: string;
  readonly train: readonly Example[];
  readonly validation: readonly Example[] | null;
  readonly test: readonly Example[] | null;
  /** Absolute paths of the files read, in reading order. */
  readonly files: readonly string[];
  /** SHA-256 (hex) over the files' bytes, in `files` order: identifies the data in reports. */
  readonly hash: string;
}

/** File names of each split in a split folder; the first that exists is read (only one may exist). */
const SPLIT_FILES = {
  train: ["train.jsonl"],
  validation: ["validation.jsonl", "valid.jsonl", "dev.jsonl"],
  test: ["test.jsonl"],
} as const;

/** The Examples of JSON Lines `file`; an empty file is a {@link DataError} naming the split. */
async function readSplit(
  file: string,
  split: string,
  files: DataFiles,
  tokenizer: Tokenizer | undefined,
): Promise<Example[]> {
  const rows = await files.jsonl(file);
  if (rows.length === 0) throw new DataError(`${file}: the ${split} split is empty (no rows)`);
  return rows.map((row) => toExample(row.value, `${file}:${row.line}`, tokenizer));
}

/** The one file of `split` in folder `dir`, or null when it has none. */
function splitFile(dir: string, names: ReadonlySet<string>, split: keyof typeof SPLIT_FILES): string | null {
  const found = SPLIT_FILES[split].filter((name) => names.has(name));
  if (found.length > 1) {
    throw new DataError(`${dir}: the ${split} split is in ${found.join(" and ")}; keep only one`);
  }
  return found.length === 0 ? null : join(dir, found[0]);
}

/** Reads a folder of split files, or a benchmark folder. */
async function readFolder(dir: string, files: DataFiles, tokenizer: Tokenizer | undefined): Promise<Splits> {
  const names = new Set<string>();
  for await (const entry of Deno.readDir(dir)) if (entry.isFile) names.add(entry.name);
  for (const benchmark of BENCHMARKS) {
    if (!(await benchmark.matches(dir, names))) continue;
    const splits = await benchmark.read(dir, names, files);
    for (const [split, examples] of Object.entries(splits)) {
      if (examples?.length === 0 && split !== "train") {
        throw new DataError(`${dir}: the ${split} split of ${benchmark.name} is empty (no rows)`);
      }
    }
    return splits;
  }
  const trainFile = splitFile(dir, names, "train");
  if (trainFile === null) {
    throw new DataError(
      `${dir}: no train.jsonl (a dataset folder holds train.jsonl, optionally validation.jsonl, valid.jsonl or ` +
        "dev.jsonl, and test.jsonl; or is a piqa, winogrande, boolq or hellaswag folder)",
    );
  }
  const read = async (split: "validation" | "test") => {
    const file = splitFile(dir, names, split);
    return file === null ? null : await readSplit(file, split, files, tokenizer);
  };
  const train = await readSplit(trainFile, "train", files, tokenizer);
  return { train, validation: await read("validation"), test: await read("test") };
}

/**
 * Loads a dataset: a JSONL file (all of it the train split), a folder with `train.jsonl` and optionally
 * `validation.jsonl` (or `valid.jsonl` or `dev.jsonl`) and `test.jsonl`, or a benchmark folder in the layout of
 * `../shared/data/benchmarks` (piqa, winogrande, boolq, hellaswag; recognized by their files), whose labelled
 * evaluation set becomes `test` and whose training file, if it has one, `train` (else `train` is empty).
 * Rows are converted with {@link toExample}; `tokenizer` renders chat rows. A missing path, an empty split and a
 * malformed row are {@link DataError}s naming the path (and `file:line`).
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { loadDataset } from "./dataset.ts";
 * const data = await loadDataset(fileURLToPath(new URL("../../fixtures/tiny-data/train.jsonl", import.meta.url)));
 * if (data.name !== "train" || data.validation !== null || data.files.length !== 1) throw new Error("one file");
 * ```
 */
export async function loadDataset(path: string, options: { tokenizer?: Tokenizer } = {}): Promise<Dataset> {
  const full = resolve(path);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(full);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such file or folder" : (e as Error).message;
    throw new DataError(`${full}: cannot load a dataset (${why})`, { cause: e });
  }
  const files = new DataFiles();
  const splits = info.isDirectory
    ? await readFolder(full, files, options.tokenizer)
    : { train: await readSplit(full, "train", files, options.tokenizer), validation: null, test: null };
  const name = info.isDirectory ? basename(full) : basename(full, extname(full));
  return { name, ...splits, files: [...files.files], hash: files.hash() };
}

/**
 * Moves `size` examples, chosen by an {@link Rng} seeded with `seed`, from `train` to a validation split. Both
 * keep the examples' original order; the same seed gives the same split.
 *
 * @example
 * ```ts
 * import { carveValidation } from "./dataset.ts";
 * const train = ["a", "b", "c", "d"].map((text, i) => ({ prompt: "", completion: text, source: `t:${i + 1}` }));
 * const carved = carveValidation(train, 1, 7);
 * if (carved.train.length !== 3 || carved.validation.length !== 1) throw new Error("3 + 1");
 * ```
 */
export function carveValidation(
  train: readonly Example[],
  size: number,
  seed: number,
): { train: Example[]; validation: Example[] } {
  if (!(Number.isInteger(size) && size > 0)) {
    throw new DataError(`cannot carve a validation split: 'size' must be a positive integer, got ${size}`);
  }
  if (size >= train.length) {
    throw new DataError(
      `cannot carve ${size} validation examples off ${train.length} training examples: ` +
        "at least one must stay in train",
    );
  }
  const picked = new Set(new Rng(seed).shuffle([...train.keys()]).slice(0, size));
  return {
    train: train.filter((_, i) => !picked.has(i)),
    validation: train.filter((_, i) => picked.has(i)),
  };
}

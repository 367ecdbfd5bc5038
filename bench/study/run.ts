/**
 * Running the study's cells: each method through the pipeline's own stages (load, prepare, search, select,
 * retrain), on the regime's splits, then scored once on the held-out test rows. Nothing here looks at the test
 * rows before the adapter is final: the search and any selection see train and validation only.
 *
 * @module
 */

import { carveValidation, type Dataset } from "../../src/data/dataset.ts";
import type { Example } from "../../src/data/example.ts";
import { Scorer } from "../../src/flexora/score.ts";
import {
  chooseStage,
  type Loaded,
  loadStage,
  prepareStage,
  retrainStage,
  searchStage,
  type Selected,
  selectStage,
} from "../../src/flexora/stages.ts";
import { buildScoringGraph } from "../../src/model/graphs.ts";
import type { Model } from "../../src/model/model.ts";
import { cellInput, cellKey, type CellSpec, deepMerge, type Group, type Regime } from "./grid.ts";
import { gradientScores, topLayers } from "./heuristic.ts";
import type { CellOutcome, CellRecord, CellStore } from "./store.ts";
import { regimeSplits, type Splits } from "./transforms.ts";

/** What every cell of a study shares. */
export interface StudyContext {
  readonly model: Model;
  readonly store: CellStore;
  /** Validation rows kept (the first ones; default all). */
  readonly valRows?: number;
  /**
   * Test rows scored (the first ones after the shift's filter; default all); at most as many training rows
   * (the first of the seeded draw) are scored, so scoring does not grow with the training set.
   */
  readonly testRows?: number;
  readonly log?: (line: string) => void;
}

/** A task's splits before the regime: a dataset without validation gets 200 rows (at most a quarter) carved, seed 0. */
export function taskSplits(data: Dataset): Splits {
  if (!data.test?.length) throw new Error(`task ${data.name} has no test split to hold out`);
  if (data.validation?.length) return { train: data.train, validation: data.validation, test: data.test };
  const carved = carveValidation(data.train, Math.min(200, Math.floor(data.train.length / 4)), 0);
  return { ...carved, test: data.test };
}

/** The regime's dataset as the pipeline takes it: no test split, so nothing during training can score it. */
function regimeDataset(data: Dataset, splits: Splits): Dataset {
  return { ...data, train: splits.train, validation: splits.validation, test: null };
}

/** Runs the group's unfinished cells in order (flexora first); returns all its cells' records. */
export async function runGroup(ctx: StudyContext, data: Dataset, group: Group): Promise<CellRecord[]> {
  const todo = group.cells.filter((c) => !ctx.store.get(cellKey(c)));
  if (todo.length === 0) return group.cells.map((c) => ctx.store.get(cellKey(c))!);
  const splits = regimeSplits(taskSplits(data), {
    ...group.regime,
    seed: group.seed,
    valRows: ctx.valRows,
    testRows: ctx.testRows,
  });
  const dataset = regimeDataset(data, splits);
  const records: CellRecord[] = [];
  let k: number | undefined;
  for (const spec of group.cells) {
    const key = cellKey(spec);
    let record = ctx.store.get(key);
    if (!record) {
      const outcome = await runCell(ctx, spec, dataset, splits, k);
      record = await ctx.store.add(spec, key, outcome);
      ctx.log?.(describe(record));
    }
    if (spec.method === "flexora") k = record.layers.length;
    records.push(record);
  }
  return records;
}

/** One line about a finished cell. */
function describe(r: CellRecord): string {
  return `${r.task} [${labelOf(r.regime)}] seed ${r.seed} ${r.method}: acc ${r.test.accuracy.toFixed(3)} ` +
    `loss ${r.test.loss.toFixed(3)} layers ${r.layers.join(",")} (${r.seconds.search.toFixed(1)} s + ` +
    `${r.seconds.retrain.toFixed(1)} s)`;
}

function labelOf(r: Regime): string {
  return `${r.rows} rows${r.noise ? ` noise ${r.noise}` : ""}${
    r.shift !== "none" ? ` shift ${r.shift}` : ""
  }`;
}

/** Trains one cell and scores it on the test rows. `k` is the flexora cell's layer count (for the k methods). */
async function runCell(
  ctx: StudyContext,
  spec: CellSpec,
  dataset: Dataset,
  splits: Splits,
  k: number | undefined,
): Promise<CellOutcome> {
  if ((spec.method === "random-k" || spec.method === "grad-top-k") && k === undefined) {
    throw new Error(`method ${spec.method} takes k from the flexora cell of its group, which did not run`);
  }
  const input = deepMerge(cellInput(spec), {
    method: spec.method === "grad-top-k" ? "lora" : spec.method,
    ...(spec.method === "random-k" && { select: `top-k:${k}` }),
  });
  const hooks = { onWarning: (w: string) => ctx.log?.(`warning (${spec.task} ${spec.method}): ${w}`) };
  const loaded = await loadStage(ctx.model, input, hooks);
  const prepared = await prepareStage(loaded, dataset, hooks);
  let selected: Selected, search = 0, scores: number[] | undefined;
  if (spec.method === "grad-top-k") {
    const g = await gradientScores(ctx.model, prepared.train, loaded.options.retrain.lora, spec.seed);
    selected = { layers: topLayers(g.scores, k!) };
    search = g.seconds, scores = g.scores;
  } else {
    const searched = await searchStage(loaded, prepared, hooks);
    // A selection that retrains candidates (validation:K) is part of choosing the layers: its time counts there.
    const started = performance.now();
    selected = await chooseStage(loaded, prepared, selectStage(loaded, searched, hooks), hooks);
    search = searched ? searched.seconds + (performance.now() - started) / 1000 : 0,
      scores = searched?.logits;
  }
  // The final retraining is scored once at the end, not after every epoch.
  const retrained = await retrainStage(loaded, { ...prepared, validationRows: [] }, selected, hooks);
  const started = performance.now();
  const scored = await scoreFinal(loaded, retrained, {
    ...splits,
    train: splits.train.slice(0, ctx.testRows ?? Infinity),
  });
  return {
    layers: selected.layers,
    trainableParams: Object.values(retrained.params).reduce((s, t) => s + t.data.length, 0),
    ...scored,
    resolved: {
      search: loaded.options.search,
      select: loaded.options.select,
      retrain: loaded.options.retrain,
    },
    seconds: { search, retrain: retrained.seconds, evaluate: (performance.now() - started) / 1000 },
    ...(scores && { scores }),
  };
}

/**
 * The adapter's accuracy and loss on the test, validation and training rows, each from one multiple-choice
 * pass: the loss is the mean cross-entropy of the choice distribution, −log softmax(choice log-likelihoods)[label],
 * so it measures how confidently the right choice wins (the completion loss would take a second pass).
 * Validation is scored so that settings can be chosen on it; train (rows as trained, label noise included: the
 * caller passes a seeded sample) so that fit can be told from generalization; test only reports.
 */
async function scoreFinal(
  { model }: Loaded,
  retrained: Awaited<ReturnType<typeof retrainStage>>,
  splits: Splits,
): Promise<Pick<CellOutcome, "test" | "validation" | "train">> {
  const session = await model.session(
    buildScoringGraph(model.config, model.weights, { config: retrained.config }),
  );
  try {
    const scorer = new Scorer(session, model.tokenizer, { adapterInputs: retrained.params });
    const score = async (split: readonly Example[]) => {
      const rows = split.map((e) => {
        if (!e.choices || e.label === undefined) {
          throw new Error(`row without choices and label: ${e.source}`);
        }
        return { prompt: e.prompt, choices: e.choices, label: e.label };
      });
      const mc = await scorer.multipleChoice(rows);
      return { accuracy: mc.accuracy, loss: choiceLoss(mc.rows, rows), n: rows.length };
    };
    return {
      test: await score(splits.test),
      validation: await score(splits.validation),
      train: await score(splits.train),
    };
  } finally {
    await session.release();
  }
}

/** Mean −log softmax(logprobs)[label] over scored rows. */
export function choiceLoss(
  scored: readonly { logprobs: readonly number[] }[],
  rows: readonly { label?: number }[],
): number {
  let sum = 0;
  scored.forEach(({ logprobs }, i) => {
    const max = Math.max(...logprobs);
    const logZ = max + Math.log(logprobs.reduce((a, l) => a + Math.exp(l - max), 0));
    sum += logZ - logprobs[rows[i].label!];
  });
  return sum / scored.length;
}

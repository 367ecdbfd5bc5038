/**
 * Flexora: gate search, layer selection, retraining, export, and the whole pipeline.
 *
 * @module
 */

export {
  CHECKPOINT_FILE,
  CHECKPOINT_VERSION,
  type CheckpointMeta,
  hasCheckpoint,
  loadCheckpoint,
  loadStageCheckpoint,
  readCheckpointMeta,
  readRunManifest,
  RUN_FILE,
  type RunManifest,
  saveCheckpoint,
  type Stage,
  type StageRecord,
  type StageRecords,
  STATE_FILE,
  writeRunManifest,
} from "./checkpoint.ts";
export { type ExportOptions, exportPeft, modelHash } from "./export.ts";
export {
  FLEXORA_FILE,
  type FlexoraJson,
  flexoraJsonText,
  type FlexoraMetrics,
  type FlexoraReport,
  hasFlexoraJson,
  readFlexoraJson,
  REPORT_VERSION,
} from "./flexora_json.ts";
export type { EpochMetrics, EvalMetrics, GateRecord, RetrainRecord, SearchRecord } from "./records.ts";
export {
  defaultOptions,
  type FinetuneInput,
  FinetuneInputSchema,
  type FinetuneOptions,
  type LoraOptions,
  MAX_EPOCHS,
  OptionsError,
  optionsIssue,
  resolveOptions,
  type RetrainOptions,
  type SearchOptions,
} from "./options.ts";
export {
  checkFit,
  estimateRun,
  MAX_STEPS,
  planFinetune,
  type RunEstimate,
  type RunFacts,
  type RunPlan,
} from "./plan.ts";
export { finetune, type FinetuneHooks, type FinetuneResult, type RunSummary, summary } from "./pipeline.ts";
export {
  chooseStage,
  evaluateStage,
  type Evaluation,
  type ExportInput,
  exportStage,
  type Loaded,
  loadStage,
  type Prepared,
  prepareStage,
  randomLayers,
  retrainStage,
  searchStage,
  type Selected,
  selectStage,
  type StageHooks,
} from "./stages.ts";
export { DivergedError, eta, type ProgressEvent, type RunHooks, StoppedError } from "./progress.ts";
export { type EvalRow, evaluate, retrain, type RetrainData, type RetrainResult } from "./retrain.ts";
export { gatesOf, type SearchData, searchGates, type SearchResult } from "./search.ts";
export {
  formatSelection,
  parseSelection,
  type Selection,
  type SelectionRule,
  selectLayers,
} from "./select.ts";
export { type ChoiceRow, type ChoiceScore, type CompletionRow, Scorer, type ScorerOptions } from "./score.ts";
export {
  buildLoraTrainStep,
  buildSearchStep,
  type Hypergradient,
  type SearchOptimizers,
  type TrainGraph,
  type TrainGraphOptions,
} from "./train_graphs.ts";
export { type HistoryPoint, historyPoint } from "./progress.ts";

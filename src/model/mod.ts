/**
 * The model engine: Hugging Face checkpoints, the Llama-family decoder with gated LoRA, and its graphs.
 *
 * @module
 */

export {
  type Architecture,
  ConfigError,
  type ModelConfig,
  parseConfig,
  readConfig,
  type RopeScaling,
} from "./config.ts";
export { generate, type GenerateOptions } from "./generate.ts";
export {
  type AdapterSpec,
  buildScoringGraph,
  buildStepGraph,
  type BuiltGraph,
  GATE_LOGITS,
  type GateForm,
  gateScale,
  gateValues,
  type GraphBuildOptions,
  kvOutputs,
  loraInputs,
} from "./graphs.ts";
export {
  decoder,
  type DecoderInputs,
  type DecoderOutputs,
  lmHead,
  type LoraBinding,
  rmsNorm,
} from "./llama.ts";
export { DEFAULT_HEAD_SLICE, headBackward, headLogits, type HeadSliceOptions } from "./lm_head.ts";
export {
  batchInputs,
  DEFAULT_VOCAB_CHUNK,
  IGNORE,
  lmHeadLoss,
  type LmHeadLossOptions,
  lmLoss,
  type LmLossOptions,
  type LossWithBackward,
} from "./lm_loss.ts";
export {
  initLora,
  type LoraConfig,
  LoraConfigError,
  loraModules,
  loraNames,
  loraScale,
  loraShapes,
  modulePath,
  TARGET_MODULES,
  type TargetModule,
  validateLora,
} from "./lora.ts";
export { dtypeWarning, loadModel, type LoadModelOptions, type Model } from "./model.ts";
export {
  type Adapter,
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type AdapterConfigJson,
  adapterConfigJson,
  AdapterError,
  type AdapterTensor,
  type AdapterWeights,
  fromPeftKey,
  isAdapterDir,
  readAdapter,
  readAdapterConfig,
  readAdapterWeights,
  toPeftKey,
  writeAdapter,
  type WriteAdapterOptions,
} from "./peft.ts";
export {
  type Checkpoint,
  openCheckpoint,
  readTensorF32,
  type TensorInfo,
  writeSafetensors,
} from "./safetensors.ts";
export { loadTokenizer, type Tokenizer } from "./tokenizer.ts";
export { FLOAT16_COPY, weightCacheDir, WeightStore, type WeightStoreOptions } from "./weights.ts";

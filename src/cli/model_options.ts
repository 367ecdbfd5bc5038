/**
 * The options every model command shares: `--model DIR|ID`, `--adapter DIR`, `--device D`, `--dtype T`,
 * `--base-dtype B`.
 *
 * @module
 */

import type { ParseArgsOptionsConfig } from "node:util";
import { type Device, DEVICES, resolveDevice } from "../runtime/device.ts";
import { formatPlacement } from "../runtime/placement.ts";
import { dtypeWarning, loadModel, type Model } from "../model/model.ts";
import { BASE_DTYPES, type BaseDtype } from "../model/weights.ts";
import { type Adapter, readAdapter } from "../model/peft.ts";
import type { AdapterSpec } from "../model/graphs.ts";
import type { HostTensor } from "../runtime/session.ts";
import { choiceOption, requireString } from "./args.ts";
import type { Io } from "./command.ts";
import { downloadReporter } from "./progress.ts";
import { modelDir } from "../hub/source.ts";

/** parseArgs options of model commands. */
export const MODEL_OPTIONS: ParseArgsOptionsConfig = {
  model: { type: "string" },
  adapter: { type: "string" },
  device: { type: "string" },
  dtype: { type: "string" },
  "base-dtype": { type: "string" },
};

/** The compute types `--dtype` accepts. */
export const DTYPES = ["float32", "float16"] as const;

/** --help text of `--model` (also used by commands that take no other model option). */
export const MODEL_ARG_HELP =
  "DIR|ID  Hugging Face model folder, or a Hub id org/name[@revision] fetched into the " +
  "Hugging Face cache (a folder that exists wins; HF_TOKEN, HF_HOME, HF_HUB_OFFLINE: docs/hub.md)";

/**
 * The local folder `--model` names: itself, or a Hub id's snapshot in the cache, downloaded with progress on
 * stderr.
 */
export async function modelFolder(model: string, io: Io): Promise<string> {
  return await modelDir(model, {
    onProgress: downloadReporter(io),
    onWarning: (w) => io.err(`warning: ${w}`),
  });
}

/** --help lines of the model options. */
export const MODEL_HELP: Record<string, string> = {
  model: MODEL_ARG_HELP,
  adapter: "DIR  PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors)",
  device: `D  ${DEVICES.join("|")} (default auto: cuda when its provider loads, else cpu; logged, with ` +
    "where each graph's nodes ran)",
  dtype: "T  float32 (default) or float16: mixed precision, meant for GPUs (emulated on the CPU, no faster)",
  "base-dtype":
    "B  bf16|f16|f32: how frozen base weights are stored (default: as in the checkpoint); 16 bits " +
    "halve an F32 checkpoint's weight memory, each weight cast to --dtype right before use",
};

/** A loaded model (on the resolved device's providers), and its optional adapter. */
export interface OpenModel {
  readonly model: Model;
  readonly adapter?: Adapter;
  /** What graphs need to take the adapter's weights as inputs. */
  readonly adapterSpec?: AdapterSpec;
  readonly adapterInputs: Record<string, HostTensor>;
  /** Set when float16 would run on the CPU (see {@link dtypeWarning}); the command prints it, or lets the library. */
  readonly warning?: string;
}

/** Loads `--model` in `--dtype` and `--adapter`, and resolves `--device` (the choice is logged to stderr). */
export async function openModel(values: Record<string, unknown>, io: Io): Promise<OpenModel> {
  const device = choiceOption<Device>(values, "device", DEVICES, "auto");
  const dtype = choiceOption(values, "dtype", DTYPES, "float32");
  const { providers } = await resolveDevice(device, (l) => io.err(l));
  const warning = dtypeWarning(dtype, providers) ?? undefined;
  const baseDtype = values["base-dtype"] === undefined
    ? undefined
    : choiceOption<BaseDtype>(values, "base-dtype", BASE_DTYPES, "f32");
  const model = await loadModel(await modelFolder(requireString(values, "model"), io), {
    dtype,
    baseDtype,
    providers,
    onPlacement: providers[0] === "cpu" ? undefined : (p) => io.err(formatPlacement(p)),
  });
  if (typeof values.adapter !== "string") return { model, adapterInputs: {}, warning };
  const adapter = await readAdapter(values.adapter, model.config);
  return {
    model,
    warning,
    adapter,
    adapterSpec: { config: adapter.config },
    adapterInputs: adapter.params,
  };
}

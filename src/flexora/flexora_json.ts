/**
 * `flexora.json`, the record beside an exported adapter: the gates, the selection, metrics per stage, the
 * options, the seed, and hashes of the data and the model. This module owns the format: {@link flexoraJsonText}
 * writes it, {@link readFlexoraJson} reads and checks it (errors name the file and the field).
 *
 * @module
 */

import { join } from "node:path";
import { z } from "zod";
import denoJson from "../../deno.json" with { type: "json" };
import { jsonNumber, jsonText, readJsonFile } from "../util/json_file.ts";
import { EpochMetrics, GateRecord } from "./records.ts";

/** The file's name in an adapter folder. */
export const FLEXORA_FILE = "flexora.json";

/** Format version of `flexora.json`. */
export const REPORT_VERSION = 1;

/** Metrics per stage; a library caller may add its own fields. */
export interface FlexoraMetrics {
  readonly search?: { readonly steps: number; readonly seconds: number; readonly history: GateRecord[] };
  readonly retrain?: {
    readonly steps: number;
    readonly seconds: number;
    readonly epochs: EpochMetrics[];
    readonly stoppedEarly: boolean;
  };
  /** Trainable parameters of the retrained adapter. */
  readonly trainableParams?: number;
  readonly [field: string]: unknown;
}

/** What the run contributes to `flexora.json` (the writer adds the format, the tool, the model and the LoRA). */
export interface FlexoraReport {
  readonly method: string;
  /** Final gate logits and gate values per layer (absent without a search). */
  readonly gates?: { readonly logits: number[]; readonly values: number[] };
  readonly selectedLayers: number[];
  readonly ranking?: number[];
  readonly selectionRule?: string;
  readonly metrics: FlexoraMetrics;
  readonly options: unknown;
  readonly seed: number;
  readonly dataHash: string;
}

/** The whole file. */
export interface FlexoraJson extends FlexoraReport {
  readonly format_version: number;
  readonly tool: { readonly name: string; readonly version: string };
  readonly model: { readonly path: string; readonly hash: string };
  /** Whether layers without LoRA got zero A and B. */
  readonly padded: boolean;
  readonly lora: { readonly rank: number; readonly alpha: number; readonly rslora: boolean };
}

const int = z.number({ error: "must be an integer" }).int({ error: "must be an integer" });
const layers = z.array(int, { error: "must be a list of layer indices" });
const version = z.literal(REPORT_VERSION, {
  error: `must be ${REPORT_VERSION}, the format this flexora reads`,
});

/** Reads a {@link FlexoraJson}; the format version is checked first, so a file of another one is named as such. */
const FlexoraJsonSchema: z.ZodType<FlexoraJson> = z.looseObject({ format_version: version }).pipe(z.object({
  format_version: version,
  tool: z.object({ name: z.string(), version: z.string() }),
  method: z.string({ error: "must be a string" }),
  gates: z.object({ logits: z.array(jsonNumber), values: z.array(jsonNumber) }).optional(),
  selectedLayers: layers,
  ranking: layers.optional(),
  selectionRule: z.string({ error: "must be a string" }).optional(),
  metrics: z.looseObject({
    search: z.object({ steps: int, seconds: jsonNumber, history: z.array(GateRecord) }).optional(),
    retrain: z.object({
      steps: int,
      seconds: jsonNumber,
      epochs: z.array(EpochMetrics),
      stoppedEarly: z.boolean(),
    }).optional(),
    trainableParams: int.optional(),
  }),
  options: z.unknown(),
  seed: int,
  dataHash: z.string({ error: "must be a string" }),
  model: z.object({ path: z.string(), hash: z.string() }),
  padded: z.boolean({ error: "must be true or false" }),
  lora: z.object({ rank: int, alpha: jsonNumber, rslora: z.boolean() }),
}));

/** The text of `flexora.json` for `report` about the model `model` and an adapter of `lora`. */
export function flexoraJsonText(
  report: FlexoraReport,
  about: {
    readonly model: { readonly path: string; readonly hash: string };
    readonly padded: boolean;
    readonly lora: { readonly rank: number; readonly alpha: number; readonly rslora: boolean };
  },
): string {
  return jsonText({
    format_version: REPORT_VERSION,
    tool: { name: "flexora", version: denoJson.version },
    ...report,
    model: about.model,
    padded: about.padded,
    lora: about.lora,
  });
}

/** Reads and checks `<dir>/flexora.json`. */
export async function readFlexoraJson(dir: string): Promise<FlexoraJson> {
  return await readJsonFile(join(dir, FLEXORA_FILE), FlexoraJsonSchema, { what: "flexora record" });
}

/** Whether `dir` holds a `flexora.json` file. */
export async function hasFlexoraJson(dir: string): Promise<boolean> {
  return await Deno.stat(join(dir, FLEXORA_FILE)).then((s) => s.isFile, () => false);
}

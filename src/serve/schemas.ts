/**
 * Request and response schemas of the sidecar's API (zod, with OpenAPI metadata). Objects are strict: an unknown
 * field is an error naming it.
 *
 * @module
 */

import { z } from "@hono/zod-openapi";
import { FinetuneInputSchema } from "../flexora/mod.ts";
import { DEVICES } from "../runtime/device.ts";
import { isSafeName, NAME_RULE, nameProblem } from "../util/safe_name.ts";
import { JOB_STATES } from "./store/mod.ts";

/** Adapter, job and server names: the one name rule ({@link isSafeName}). */
export const Name = z.string().refine(isSafeName, { error: (issue) => nameProblem(issue.input) }).openapi({
  description: NAME_RULE,
  pattern: "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$",
});

/**
 * Finetune options: the library's one options schema (`src/flexora/options.ts`), described inline (it is plain
 * zod, which the library may load before zod-openapi extends it).
 */
export const FinetuneOptions = FinetuneInputSchema;

export const JobCreate = z.strictObject({
  model: z.string().min(1).max(4096).openapi({
    description:
      "model directory, inside a configured model root; or a Hub id (org/name[@revision]) when the " +
      "sidecar allows them (--allow-hub): the job downloads it, in its 'downloading' state",
  }),
  data: z.string().min(1).max(4096).openapi({
    description: "dataset file or folder, inside a configured data root",
  }),
  name: Name.openapi({ description: "adapter name" }),
  method: z.enum(["flexora", "lora", "random-k"]).optional(),
  options: FinetuneOptions.optional(),
  padLayers: z.boolean().optional(),
  device: z.enum(DEVICES).optional().openapi({
    description: "where the job trains (default: the sidecar's --device); resolved and checked at submit " +
      "(auto: cuda when its provider loads, else cpu), and the job's request records the concrete device",
  }),
  attach: z.strictObject({ server: Name, name: Name.optional() }).optional(),
}).openapi("JobCreate");

export const Job = z.object({
  id: z.string(),
  state: z.enum(JOB_STATES),
  request: z.record(z.string(), z.unknown()),
  progress: z.record(z.string(), z.unknown()).nullable(),
  result: z.record(z.string(), z.unknown()).nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  retries: z.int().min(0).openapi({ description: "automatic resumptions after its runner died" }),
  owner: z.string().nullable().openapi({
    description:
      "the sidecar that claimed it last (GET /healthz names each sidecar); it holds the job's lease " +
      "while the job runs",
  }),
  resume: z.boolean().openapi({ description: "its next run continues from its checkpoint" }),
  createdAt: z.string(),
  updatedAt: z.string(),
}).openapi("Job");

export const Estimate = z.object({
  steps: z.object({ search: z.int(), retrain: z.int(), total: z.int() }).openapi({
    description: "optimizer steps per stage (retrain at most: early stopping may end it sooner)",
  }),
  weightsBytes: z.number().openapi({ description: "the base weights in the compute dtype" }),
  memoryBytes: z.number().openapi({
    description: "the run's tensors at the larger stage's peak, full-length sequences (a rough formula for " +
      "planning, not calibrated against measured peaks; the runtime's own overhead comes on top)",
  }),
}).openapi("Estimate");

/** One point of a job's history. */
export const HistoryRow = z.object({
  id: z.int(),
  stage: z.enum(["search", "retrain", "evaluate", "export"]),
  step: z.int(),
  loss: z.number().optional(),
  valLoss: z.number().optional(),
  gates: z.array(z.number()).readonly().optional(),
  logits: z.array(z.number()).readonly().optional(),
}).openapi("HistoryPoint");

export const ServerRef = z.strictObject({ server: Name }).openapi("ServerRef");

const Verification = z.object({
  listed: z.boolean(),
  changesOutput: z.boolean().nullable(),
  detail: z.string(),
});

/** What one replica did. */
export const ReplicaOutcome = z.object({
  url: z.string(),
  name: z.string(),
  ok: z.boolean(),
  action: z.enum(["unchanged", "attached", "repaired", "swapped", "detached", "absent", "failed", "skipped"]),
  version: z.string().nullable().openapi({ description: "the version the replica serves afterwards" }),
  verification: Verification.optional(),
  attempts: z.number().optional(),
  millis: z.number().optional(),
  error: z.string().optional(),
  transient: z.boolean().optional().openapi({ description: "a failure the reconcile loop retries" }),
  unsupported: z.boolean().optional(),
}).openapi("ReplicaOutcome");

export const AttachReport = z.object({
  server: z.string(),
  adapter: z.string().openapi({ description: "the name requests use" }),
  version: z.string(),
  path: z.string(),
  complete: z.boolean().openapi({ description: "every replica serves this version, verified" }),
  desired: z.literal(true),
  replicas: z.array(ReplicaOutcome),
  verification: Verification.optional().openapi({ description: "the first replica's verification that ran" }),
  attempts: z.number(),
  millis: z.number(),
}).openapi("AttachReport");

export const DetachReport = z.object({
  server: z.string(),
  adapter: z.string(),
  detached: z.literal(true),
  complete: z.boolean().openapi({ description: "every replica was seen without it" }),
  replicas: z.array(ReplicaOutcome),
}).openapi("DetachReport");

export const ErrorBody = z.object({
  error: z.object({ message: z.string(), field: z.string().optional() }),
}).openapi("Error");

export const IdParam = z.object({ id: z.string().max(64).openapi({ param: { name: "id", in: "path" } }) });
export const NameParam = z.object({ name: Name.openapi({ param: { name: "name", in: "path" } }) });

/** An OpenAPI JSON response of `schema`. */
export const jsonContent = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { "application/json": { schema } },
  description,
});

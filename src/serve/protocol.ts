/**
 * The sidecar ↔ runner protocol, owned here and nowhere else: the job spec (a JSON file the sidecar writes and
 * names on the runner's command line) and the runner's event stream (one JSON object per line on its stdout).
 * Each has a typed writer and a validating reader; a reader's error names the file or line and the field.
 *
 * Events, in the order a run sends them: `download` while a Hub model is fetched, `start` when a stage begins
 * (from step 0 or from its checkpoint), `progress` after each step, `checkpoint` after each checkpoint is written,
 * `warning` at any time, then one of `result`, `stopped` or `error`.
 *
 * @module
 */

import { z } from "zod";
import type { FinetuneInput, ProgressEvent } from "../flexora/mod.ts";
import { DEVICES } from "../runtime/device.ts";

/** Thrown for a spec or event that does not follow the protocol; the message names the field. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

const Options = z.custom<FinetuneInput>(
  (v) => typeof v === "object" && v !== null && !Array.isArray(v),
  "must be an object of finetune options",
);

const RunnerSpecSchema = z.strictObject({
  model: z.string().min(1),
  data: z.string().min(1),
  options: Options,
  out: z.string().min(1),
  checkpointDir: z.string().min(1),
  resume: z.boolean(),
  padLayers: z.boolean().optional(),
  device: z.enum(DEVICES).optional(),
});

/** What the sidecar hands a runner. `device` is where to train (default "cpu"). */
export type RunnerSpec = z.infer<typeof RunnerSpecSchema>;

const finite = z.number().refine(Number.isFinite, "must be a finite number");
const Stage = z.enum(["search", "retrain", "evaluate", "export"]);

const ProgressSchema = z.strictObject({
  stage: Stage,
  step: z.int().min(0),
  total: z.int().min(0),
  loss: finite.optional(),
  valLoss: finite.optional(),
  gates: z.array(finite).readonly().optional(),
  logits: z.array(finite).readonly().optional(),
  elapsed: z.number().min(0),
  eta: z.number().min(0),
  message: z.string().optional(),
}) satisfies z.ZodType<ProgressEvent>;

/** What a finished run reports (the CLI's `--json` summary). */
const SummarySchema = z.looseObject({
  method: z.enum(["flexora", "lora", "random-k"]),
  adapter: z.string().nullable(),
  selectedLayers: z.array(z.int().min(0)),
  trainableParams: z.int().min(0),
  timings: z.record(z.string(), z.number()),
});

/** A finished run's summary. */
export type RunSummary = z.infer<typeof SummarySchema>;

const EventSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("start"),
    stage: z.enum(["search", "retrain"]),
    /** The step the stage starts from: 0, or its checkpoint's. */
    step: z.int().min(0),
    total: z.int().min(0),
    /** Seconds this stage had already run in earlier segments. */
    seconds: z.number().min(0),
  }),
  z.strictObject({
    type: z.literal("download"),
    file: z.string(),
    /** Bytes of `file` received so far, and its size. */
    received: z.number().min(0),
    total: z.number().min(0),
    elapsed: z.number().min(0),
    eta: z.number().min(0),
  }),
  z.strictObject({ type: z.literal("progress"), event: ProgressSchema }),
  /** The stage's checkpoint (in the spec's `checkpointDir`) now holds the state after `step`. */
  z.strictObject({
    type: z.literal("checkpoint"),
    stage: z.enum(["search", "retrain"]),
    step: z.int().min(0),
  }),
  z.strictObject({ type: z.literal("warning"), message: z.string() }),
  z.strictObject({ type: z.literal("result"), summary: SummarySchema }),
  z.strictObject({ type: z.literal("stopped"), message: z.string() }),
  z.strictObject({ type: z.literal("error"), name: z.string(), message: z.string() }),
]);

/** One line of runner output. */
export type RunnerEvent = z.infer<typeof EventSchema>;

/** The first problem zod found, as `'path' message, got value`. */
function describe(error: z.ZodError, value: unknown): string {
  const issue = error.issues[0];
  const path = issue.path.map(String).join(".");
  let got: unknown = value;
  for (const key of issue.path) got = (got as Record<PropertyKey, unknown> | undefined)?.[key as string];
  const shown = got === undefined
    ? "nothing"
    : typeof got === "number"
    ? String(got)
    : JSON.stringify(got)?.slice(0, 80);
  return `'${path || "(root)"}' ${issue.message.toLowerCase()}, got ${shown}`;
}

function parse<T>(schema: z.ZodType<T>, text: string, where: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ProtocolError(`${where}: not JSON (${(e as Error).message})`);
  }
  const checked = schema.safeParse(value);
  if (!checked.success) throw new ProtocolError(`${where}: ${describe(checked.error, value)}`);
  return checked.data;
}

/** Writes a spec file for a runner; a spec off the protocol throws, naming the field. */
export async function writeSpec(file: string, spec: RunnerSpec): Promise<void> {
  const checked = RunnerSpecSchema.safeParse(spec);
  if (!checked.success) throw new ProtocolError(`runner spec ${file}: ${describe(checked.error, spec)}`);
  await Deno.writeTextFile(file, JSON.stringify(checked.data, null, 2) + "\n");
}

/**
 * Reads and validates a spec file.
 *
 * @example
 * ```ts
 * import { readSpec, writeSpec } from "./protocol.ts";
 * const file = await Deno.makeTempFile();
 * await writeSpec(file, { model: "m", data: "d", options: {}, out: "o", checkpointDir: "c", resume: false });
 * if ((await readSpec(file)).model !== "m") throw new Error("round trip");
 * await Deno.remove(file);
 * ```
 */
export async function readSpec(file: string): Promise<RunnerSpec> {
  return parse(RunnerSpecSchema, await Deno.readTextFile(file), `runner spec ${file}`);
}

/** An event as its line on the stream (with the newline); one off the protocol throws, naming the field. */
export function encodeEvent(event: RunnerEvent): string {
  const checked = EventSchema.safeParse(event);
  if (!checked.success) {
    throw new ProtocolError(`runner event ${event.type}: ${describe(checked.error, event)}`);
  }
  return JSON.stringify(checked.data) + "\n";
}

/** Reads one line of the stream. */
export function decodeEvent(line: string): RunnerEvent {
  return parse(EventSchema, line, `runner event ${line.length > 120 ? line.slice(0, 120) + "…" : line}`);
}

/** The events of a runner's stdout, one per non-empty line; a line off the protocol throws. */
export async function* readEvents(
  stream: ReadableStream<Uint8Array<ArrayBuffer>>,
): AsyncIterable<RunnerEvent> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line) yield decodeEvent(line);
    }
  }
  if (buffered.trim()) yield decodeEvent(buffered.trim());
}

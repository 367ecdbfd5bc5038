/**
 * One error shape for every failure: `{"error": {"message": ..., "field"?: ...}}` with a 4xx or 5xx status.
 *
 * @module
 */

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { AttachError, UnsupportedError } from "../../plugins/types.ts";
import { DataError } from "../data/jsonl.ts";
import { OptionsError, optionsIssue } from "../flexora/mod.ts";
import { ConfigError } from "../model/config.ts";
import { TokenizerError } from "../model/tokenizer.ts";
import { DeviceError } from "../runtime/device.ts";
import { JobError } from "./jobs.ts";
import { NotAttachedError } from "./reconcile/operations.ts";

/** The JSON error body. */
export function errorBody(message: string, field?: string): { error: { message: string; field?: string } } {
  return { error: field ? { message, field } : { message } };
}

/**
 * zod-openapi's validation hook: a 400 naming the first offending field. A problem with the finetune options is
 * described by the options schema's own formatter, so the API says what the library and the CLI say.
 */
export function validationHook(
  // deno-lint-ignore no-explicit-any
  result: { success: boolean; error?: any; data?: any },
  c: Context,
): Response | undefined {
  if (result.success) return;
  const issue = result.error?.issues?.[0];
  if (issue?.path?.[0] === "options" && issue.path.length > 1) {
    const e = optionsIssue({ ...issue, path: issue.path.slice(1) }, result.data?.options);
    return c.json(errorBody(e.message, `options.${e.option}`), 400);
  }
  const path = issue?.path?.join(".") ?? "";
  const keys: string[] = issue?.keys ?? [];
  const field = keys.length ? [path, keys[0]].filter(Boolean).join(".") : path;
  const message = `${field ? `'${field}': ` : ""}${issue?.message ?? "invalid request"}`;
  return c.json(errorBody(message, field || undefined), 400);
}

/** Maps any thrown error to the JSON error shape and a status. */
export function toResponse(e: Error, c: Context): Response {
  let status: ContentfulStatusCode = 500;
  if (e instanceof HTTPException) status = e.status as ContentfulStatusCode;
  else if (e instanceof JobError) status = e.status;
  else if (e instanceof NotAttachedError) status = 404;
  else if (e instanceof OptionsError) status = 400;
  // A job's device whose provider does not load here (the message has the install line).
  else if (e instanceof DeviceError) status = 400;
  // The model or the data of a submitted job cannot be used (each message names the file).
  else if (e instanceof ConfigError || e instanceof TokenizerError || e instanceof DataError) status = 400;
  else if (e instanceof UnsupportedError) status = 501;
  else if (e instanceof AttachError) status = 502;
  let message = e instanceof HTTPException && e.message === "" ? "request failed" : e.message;
  if (status === 415) {
    // Every route with a body takes JSON.
    const sent = c.req.header("content-type");
    message = `the request body must be JSON, sent with Content-Type: application/json (got ${
      sent ? `Content-Type: ${sent}` : "no Content-Type"
    })`;
  }
  const field = e instanceof OptionsError ? `options.${e.option}` : undefined;
  return c.json(errorBody(status === 500 ? `internal error: ${message}` : message, field), status);
}

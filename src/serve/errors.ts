/**
 * One error shape for every failure: `{"error": {"message": ..., "field"?: ...}}` with a 4xx or 5xx status.
 *
 * @module
 */

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { AttachError, UnsupportedError } from "../../plugins/types.ts";
import { OptionsError } from "../flexora/options.ts";
import { JobError } from "./jobs.ts";
import { NotAttachedError } from "./reconcile/operations.ts";

/** The JSON error body. */
export function errorBody(message: string, field?: string): { error: { message: string; field?: string } } {
  return { error: field ? { message, field } : { message } };
}

/** zod-openapi's validation hook: a 400 naming the first offending field. */
// deno-lint-ignore no-explicit-any
export function validationHook(result: { success: boolean; error?: any }, c: Context): Response | undefined {
  if (result.success) return;
  const issue = result.error?.issues?.[0];
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
  return c.json(errorBody(status === 500 ? `internal error: ${message}` : message), status);
}

/**
 * Errors in vLLM's OpenAI-compatible shape: `{"error": {"message", "type", "param", "code"}}`, where `code` repeats
 * the HTTP status. One `onError` maps every thrown error to that shape.
 *
 * @module
 */

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";

/** The error types vLLM answers with. */
export type ApiErrorType =
  | "BadRequestError"
  | "InvalidUserInput"
  | "NotFoundError"
  | "PermissionDeniedError"
  | "InternalServerError"
  | "ServiceUnavailableError";

/** The JSON body of an error response. */
export interface ErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: ApiErrorType;
    readonly param: string | null;
    readonly code: number;
  };
}

/**
 * An error answered with its status and vLLM's error body.
 *
 * @example
 * ```ts
 * import { ApiError } from "./errors.ts";
 * const e = ApiError.notFound("The model `x` does not exist.", "model");
 * if (e.body().error.code !== 404) throw new Error("the code repeats the status");
 * ```
 */
export class ApiError extends HTTPException {
  override name = "ApiError";

  constructor(
    status: ContentfulStatusCode,
    message: string,
    readonly type: ApiErrorType,
    readonly param: string | null = null,
  ) {
    super(status, { message });
  }

  /** 400 BadRequestError. */
  static badRequest(message: string, param: string | null = null): ApiError {
    return new ApiError(400, message, "BadRequestError", param);
  }

  /** 400 InvalidUserInput (what vLLM's LoRA routes use for missing fields and duplicate names). */
  static invalidInput(message: string, param: string | null = null): ApiError {
    return new ApiError(400, message, "InvalidUserInput", param);
  }

  /** 404 NotFoundError. */
  static notFound(message: string, param: string | null = null): ApiError {
    return new ApiError(404, message, "NotFoundError", param);
  }

  body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.status } };
  }
}

/** The app's `onError`: ApiError as is, other HTTP exceptions by status, anything else as a 500. */
export function onError(e: Error, c: Context): Response {
  const error = e instanceof ApiError ? e : e instanceof HTTPException
    ? new ApiError(
      e.status as ContentfulStatusCode,
      e.message || "request failed",
      e.status === 404 ? "NotFoundError" : e.status < 500 ? "BadRequestError" : "InternalServerError",
    )
    : new ApiError(500, `internal error: ${e.message}`, "InternalServerError");
  return c.json(error.body(), error.status as ContentfulStatusCode);
}

/** Reads a JSON object body; anything else is a 400 naming what was wrong. */
export async function readJsonObject(c: Context): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await c.req.text();
  } catch (e) {
    throw ApiError.badRequest(`cannot read the request body: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw ApiError.badRequest(`the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    const kind = Array.isArray(json) ? "an array" : json === null ? "null" : `a ${typeof json}`;
    throw ApiError.badRequest(`the request body must be a JSON object, got ${kind}`);
  }
  return json as Record<string, unknown>;
}

/**
 * Turning failures into the errors the sidecar maps: {@link AttachError} for anything a server or the adapter
 * folder did wrong, {@link UnsupportedError} and aborts passed through untouched.
 *
 * @module
 */

import { ServerError } from "./http.ts";
import { AttachError, type ServerConfig, UnsupportedError } from "./types.ts";

/** "Cannot attach 'a' to server 's'", the prefix of every attach error message. */
export function attaching(server: ServerConfig, name: string): string {
  return `Cannot attach '${name}' to server '${server.name}'`;
}

/** "Cannot detach 'a' from server 's'". */
export function detaching(server: ServerConfig, name: string): string {
  return `Cannot detach '${name}' from server '${server.name}'`;
}

/**
 * Rethrows `e` as an {@link AttachError} whose message starts with `what`; a {@link ServerError} keeps the
 * server's status and message. {@link AttachError}, {@link UnsupportedError} and aborts pass through.
 *
 * @example
 * ```ts
 * import { rethrow } from "./errors.ts";
 * import { ServerError } from "./http.ts";
 * import { AttachError } from "./types.ts";
 * try {
 *   rethrow("Cannot attach 'a' to server 's'", new ServerError("x", { status: 400, serverMessage: "bad", attempts: 1 }));
 * } catch (e) {
 *   if (!(e instanceof AttachError) || e.status !== 400 || e.serverMessage !== "bad") throw e;
 * }
 * ```
 */
export function rethrow(what: string, e: unknown): never {
  if (e instanceof AttachError || e instanceof UnsupportedError) throw e;
  if (e instanceof DOMException && (e.name === "AbortError" || e.name === "TimeoutError")) throw e;
  if (e instanceof ServerError) {
    throw new AttachError(`${what}: ${e.message}`, {
      status: e.status,
      serverMessage: e.serverMessage,
      cause: e,
    });
  }
  throw new AttachError(`${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

/** Runs `body`, rethrowing its failures through {@link rethrow} with `what`. */
export async function failingAs<T>(what: string, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (e) {
    rethrow(what, e);
  }
}

/**
 * The sidecar's guards: bearer tokens, and paths confined to configured roots and to regular files.
 *
 * @module
 */

import { timingSafeEqual } from "node:crypto";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import type { MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";

/** A random token for a first start without `FLEXORA_TOKEN`. */
export function generateToken(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
}

function sameToken(given: string, token: string): boolean {
  const a = new TextEncoder().encode(given), b = new TextEncoder().encode(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The token of an `Authorization: Bearer <token>` header, or null. The scheme is case-insensitive and may be
 * followed by several spaces (RFC 7235 section 2.1).
 */
export function bearerToken(header: string | undefined): string | null {
  const match = /^bearer +(\S+) *$/i.exec(header ?? "");
  return match ? match[1] : null;
}

/** Options of {@link bearerAuth}. */
export interface AuthOptions {
  readonly token: string;
  /** Also guard reads (GET): when the sidecar listens beyond loopback. */
  readonly guardReads: boolean;
}

/** Middleware factory: `Authorization: Bearer <token>` on mutating requests (and reads when asked). */
export function bearerAuth(options: AuthOptions): MiddlewareHandler {
  return async (c, next) => {
    const mutating = c.req.method !== "GET" && c.req.method !== "HEAD";
    // Health checks, and the dashboard's pages (no data: their API calls carry the token), load without it.
    const open = c.req.path === "/healthz" ||
      (!mutating && (c.req.path === "/" || /^\/jobs\/[^/]+$/.test(c.req.path)));
    if (!open && (mutating || options.guardReads)) {
      const given = bearerToken(c.req.header("authorization"));
      if (!given || !sameToken(given, options.token)) {
        throw new HTTPException(401, {
          message: "missing or wrong bearer token (Authorization: Bearer <token>)",
        });
      }
    }
    await next();
  };
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

/**
 * Resolves `path` (relative paths against the sidecar's working directory, as the CLI does) and checks it stays
 * inside one of `roots` after following symlinks; returns the real path, or throws a 400 naming the field and the
 * value.
 */
export async function confine(field: string, path: string, roots: readonly string[]): Promise<string> {
  if (roots.length === 0) {
    throw new HTTPException(400, { message: `'${field}': no roots are configured for it` });
  }
  let real: string;
  try {
    real = await Deno.realPath(resolve(path));
  } catch {
    throw new HTTPException(400, { message: `'${field}': ${JSON.stringify(path)} does not exist` });
  }
  for (const root of roots) {
    const rootReal = await Deno.realPath(root).catch(() => resolve(root));
    const rel = relative(rootReal, real);
    if (rel === "" || (!rel.startsWith("..") && !isAbsolute(rel) && !rel.startsWith(`..${sep}`))) return real;
  }
  throw new HTTPException(400, {
    message: `'${field}': ${JSON.stringify(path)} is outside the allowed roots`,
  });
}

/**
 * Checks that `path` (as {@link confine} returns it) is a regular file, or a folder whose entries are regular files
 * or folders: reading a FIFO or a device would block the job (and its cancel) forever. Throws a 400 naming the
 * field and the path.
 */
export async function requireRegular(field: string, path: string): Promise<void> {
  const kind = (info: Deno.FileInfo) =>
    info.isFifo
      ? "a FIFO"
      : info.isCharDevice || info.isBlockDevice
      ? "a device"
      : info.isSocket
      ? "a socket"
      : null;
  const refuse = (what: string, where: string) => {
    throw new HTTPException(400, {
      message: `'${field}': ${JSON.stringify(where)} is ${what}, not a regular file or folder`,
    });
  };
  const info = await Deno.stat(path);
  const top = kind(info);
  if (top) refuse(top, path);
  if (!info.isDirectory) return;
  for await (const entry of Deno.readDir(path)) {
    const inside = join(path, entry.name);
    const what = await Deno.stat(inside).then(kind, () => null); // a dangling link is the reader's to report
    if (what) refuse(what, inside);
  }
}

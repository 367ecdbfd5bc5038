/**
 * The sidecar's guards: bearer tokens, paths confined to configured roots and to regular files, credentials in
 * server URLs kept out of answers, records and logs, and a data directory only its owner can read.
 *
 * @module
 */

import { timingSafeEqual } from "node:crypto";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import type { MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { parseHubId } from "../hub/id.ts";

/** A random token for a first start without `FLEXORA_TOKEN`. */
export function generateToken(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
}

/** Tokens shorter than this are refused off loopback and warned about on it (a generated one has 48). */
export const MIN_TOKEN_LENGTH = 16;

/**
 * Checks the bearer token before the sidecar starts (`source` says where it came from, for the messages). Throws
 * for an empty or blank token (every request would be refused, silently) and for a token shorter than
 * {@link MIN_TOKEN_LENGTH} when `host` is not loopback (anyone who can reach the port could guess it); returns a
 * warning for a short token on loopback, else null.
 */
export function checkToken(token: string, source: string, host: string): string | null {
  if (token.trim() === "") {
    throw new Error(
      `${source} holds an empty token: every request would be refused. Write a token of at least ` +
        `${MIN_TOKEN_LENGTH} characters there${
          source.startsWith("FLEXORA_TOKEN") ? "" : " (or delete the file to have one generated)"
        }`,
    );
  }
  if (token.length >= MIN_TOKEN_LENGTH) return null;
  const short =
    `${source} holds a token of ${token.length} characters (at least ${MIN_TOKEN_LENGTH} are advised)`;
  if (!isLoopback(host)) {
    throw new Error(`${short}; refused on ${host}, which other machines can reach`);
  }
  return `${short}; accepted only because ${host} is loopback`;
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

/**
 * Middleware factory against DNS rebinding: a browser tricked into sending a page's requests to this sidecar
 * (a hostile name that resolves to 127.0.0.1) sends that name as `Host`. Only requests naming `allowed` hosts
 * (any port) are answered; the rest get a 403 that says how to allow a name.
 */
export function hostGuard(allowed: readonly string[]): MiddlewareHandler {
  return async (c, next) => {
    const host = refusedHost(c.req.url, allowed);
    if (host !== null) {
      throw new HTTPException(403, {
        message: `Host '${host}' is not a name this sidecar answers to (${allowed.join(", ")}); ` +
          "add it with --allowed-host",
      });
    }
    await next();
  };
}

/**
 * The host name of a request's `url` when it is not one of `allowed` (names compared without case, IPv6
 * brackets or port), else null: the check behind {@link hostGuard}, shared with the embedded server.
 *
 * @example
 * ```ts
 * import { refusedHost } from "./security.ts";
 * if (refusedHost("http://LOCALHOST:8000/v1", ["localhost"]) !== null) throw new Error("allowed");
 * if (refusedHost("http://rebind.example/v1", ["localhost"]) !== "rebind.example") throw new Error("refused");
 * ```
 */
export function refusedHost(url: string, allowed: readonly string[]): string | null {
  const bare = (h: string) => h.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  const host = bare(new URL(url).hostname);
  return allowed.some((a) => bare(a) === host) ? null : host;
}

/** The hosts a sidecar bound to `host` answers to: loopback names, the bind address, and `extra`. */
export function allowedHosts(host: string, extra: readonly string[] = []): string[] {
  return [...new Set(["localhost", "127.0.0.1", "::1", host, ...extra])];
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
 * The Hub id a job's `model` names, or null when it names a path (one that exists is always a path, as on the
 * command line). A Hub id the sidecar does not allow (`allowHub`) is a 400 that says how to allow it.
 *
 * @example
 * ```ts
 * import { hubModel } from "./security.ts";
 * if (await hubModel("org/name@v1", ["org"]) !== "org/name@v1") throw new Error("an allowed organisation");
 * if (await hubModel("./models/x", true) !== null) throw new Error("a path is not an id");
 * ```
 */
export async function hubModel(
  model: string,
  allowHub: boolean | readonly string[] = false,
): Promise<string | null> {
  const id = parseHubId(model);
  if (!id || (await Deno.stat(resolve(model)).then(() => true, () => false))) return null;
  const allowed = allowHub === true ||
    (Array.isArray(allowHub) && allowHub.some((a) => a === id.repo || a === id.repo.split("/")[0]));
  if (allowed) return model;
  throw new HTTPException(400, {
    message: `'model': ${JSON.stringify(model)} is not a folder here, and the sidecar does not take Hub ids` +
      (Array.isArray(allowHub) && allowHub.length ? ` other than ${allowHub.join(", ")}` : "") +
      "; start it with --allow-hub (any id) or --allow-hub-from ORG,ORG/NAME",
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

/** `scheme://user:password@` (any userinfo) in a URL; the authority ends at `/`, `?`, `#`, a quote or a space. */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>]+@/gi;

/**
 * Replaces the userinfo of every URL in `text` with `***` (`http://admin:PASSWORD@host` →
 * `http://***@host`). The one redaction: applied to every answer ({@link redactResponses}), to every job record
 * written to the store, and to the sidecar's log lines.
 *
 * @example
 * ```ts
 * import { redactSecrets } from "./security.ts";
 * const said = redactSecrets("attach to http://admin:hunter2@10.0.0.1:8000/v1 failed");
 * if (said !== "attach to http://***@10.0.0.1:8000/v1 failed") throw new Error(said);
 * ```
 */
export function redactSecrets(text: string): string {
  return text.replace(USERINFO, "$1***@");
}

/** Middleware factory: JSON and text answers (errors included) pass through {@link redactSecrets}. */
export function redactResponses(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const type = c.res.headers.get("content-type") ?? "";
    if (!/^(application\/json|text\/plain)/.test(type)) return; // streams, pages and pictures carry no URLs
    const { status } = c.res, text = await c.res.text();
    const headers = new Headers(c.res.headers);
    headers.delete("content-length");
    c.res = undefined; // replace the answer rather than merge into it
    c.res = new Response(redactSecrets(text), { status, headers });
  };
}

/**
 * Makes `dir` the sidecar's private data directory: created, or tightened, to mode 0700, with the job database
 * (created here, so SQLite's journal files take its mode) and the token file 0600.
 */
export async function privateDataDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dir, 0o700);
  await Deno.writeFile(join(dir, "jobs.sqlite"), new Uint8Array(), { append: true, mode: 0o600 });
  for (const name of ["jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", "token"]) {
    await Deno.chmod(join(dir, name), 0o600).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
}

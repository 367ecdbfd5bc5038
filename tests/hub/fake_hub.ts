/**
 * A fake Hugging Face Hub on 127.0.0.1 for tests: the model API route and the resolve route with the Hub's
 * headers (ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, X-Error-Code), LFS files redirected to a second
 * server on another port (the "CDN", another origin, so tokens must not reach it) that honours range requests.
 * Tests can cut a transfer halfway (`interrupt`), corrupt one (`corrupt`), and read every request made.
 */

import { createHash } from "node:crypto";

/** A repository: its commits (files by path), refs (branch or tag to commit) and whether it is gated. */
export interface FakeRepo {
  commits: Record<string, Record<string, Uint8Array>>;
  refs: Record<string, string>;
  /** Files are served only with this bearer token. */
  token?: string;
}

/** One request the fake servers saw. */
export interface SeenRequest {
  server: "hub" | "cdn";
  method: string;
  path: string;
  range: string | null;
  auth: string | null;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
/** The git blob id the Hub reports as the ETag of a non-LFS file. */
const gitOid = (b: Uint8Array) =>
  createHash("sha1").update(new TextEncoder().encode(`blob ${b.length}\0`)).update(b).digest("hex");
const isLfs = (path: string) => path.endsWith(".safetensors");

/** A 40-hex commit id derived from a name, for readable tests. */
export function commitId(name: string): string {
  return createHash("sha1").update(name).digest("hex");
}

/** The two servers; `close()` stops both. */
export class FakeHub {
  readonly repos: Record<string, FakeRepo>;
  readonly requests: SeenRequest[] = [];
  /** Paths (repo file paths) whose next CDN transfer stops after half the bytes. */
  readonly interrupt = new Set<string>();
  /** Paths whose CDN bytes are altered (one byte flipped) on every transfer. */
  readonly corrupt = new Set<string>();
  #hub: Deno.HttpServer<Deno.NetAddr>;
  #cdn: Deno.HttpServer<Deno.NetAddr>;
  #blobs = new Map<string, { bytes: Uint8Array; path: string }>();
  #cdnHost: string;

  /**
   * `cdnHost` names the CDN in redirects (default 127.0.0.1, another origin by its port); huggingface_hub, which
   * tells the CDN apart by host name, needs another name, such as `localhost`.
   */
  constructor(repos: Record<string, FakeRepo>, options: { cdnHost?: string } = {}) {
    this.repos = repos;
    this.#cdnHost = options.cdnHost ?? "127.0.0.1";
    for (const repo of Object.values(repos)) {
      for (const files of Object.values(repo.commits)) {
        for (const [path, bytes] of Object.entries(files)) {
          if (isLfs(path)) this.#blobs.set(sha256(bytes), { bytes, path });
        }
      }
    }
    const quiet = { hostname: "127.0.0.1", port: 0, onListen() {} };
    this.#hub = Deno.serve(quiet, (r) => this.#serveHub(r));
    this.#cdn = Deno.serve(quiet, (r) => this.#serveCdn(r));
  }

  /** The Hub's base URL (what HF_ENDPOINT would be). */
  get url(): string {
    return `http://127.0.0.1:${this.#hub.addr.port}`;
  }

  async close(): Promise<void> {
    await Promise.all([this.#hub.shutdown(), this.#cdn.shutdown()]);
  }

  #seen(server: SeenRequest["server"], r: Request): URL {
    const url = new URL(r.url);
    this.requests.push({
      server,
      method: r.method,
      path: decodeURIComponent(url.pathname),
      range: r.headers.get("range"),
      auth: r.headers.get("authorization"),
    });
    return url;
  }

  #serveHub(r: Request): Response {
    const url = this.#seen("hub", r);
    const api = url.pathname.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/);
    const resolve = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    const [, repoId, rawRev] = api ?? resolve ?? [];
    const repo = repoId ? this.repos[repoId] : undefined;
    if (!repo) return error(404, "RepoNotFound");
    const rev = decodeURIComponent(rawRev);
    const commit = repo.commits[rev] ? rev : repo.refs[rev];
    if (!commit) return error(404, "RevisionNotFound");
    const files = repo.commits[commit];
    if (api) {
      return Response.json({
        id: repoId,
        sha: commit,
        siblings: Object.keys(files).map((rfilename) => ({ rfilename })),
      });
    }
    if (repo.token && r.headers.get("authorization") !== `Bearer ${repo.token}`) {
      return error(401, "GatedRepo");
    }
    const path = decodeURIComponent(resolve![3]), bytes = files[path];
    if (!bytes) return error(404, "EntryNotFound");
    if (isLfs(path)) {
      const sha = sha256(bytes);
      return new Response(null, {
        status: 302,
        headers: {
          location: `http://${this.#cdnHost}:${this.#cdn.addr.port}/repos/${sha}?signed=1`,
          etag: `"${gitOid(new TextEncoder().encode(`oid sha256:${sha}`))}"`,
          "x-linked-etag": `"${sha}"`,
          "x-linked-size": String(bytes.length),
          "x-repo-commit": commit,
        },
      });
    }
    const headers = {
      etag: `"${gitOid(bytes)}"`,
      "x-repo-commit": commit,
      "content-length": String(bytes.length),
    };
    return new Response(r.method === "HEAD" ? null : bytes.slice(), { headers });
  }

  #serveCdn(r: Request): Response {
    const url = this.#seen("cdn", r);
    const blob = this.#blobs.get(url.pathname.replace("/repos/", ""));
    if (!blob) return new Response("no such blob", { status: 404 });
    let bytes = blob.bytes;
    if (this.corrupt.has(blob.path)) {
      bytes = bytes.slice();
      bytes[bytes.length >> 1] ^= 0xff;
    }
    const m = r.headers.get("range")?.match(/^bytes=(\d+)-$/);
    const start = m ? Number(m[1]) : 0;
    if (start >= bytes.length && bytes.length > 0) return new Response(null, { status: 416 });
    const body = bytes.slice(start);
    const headers: Record<string, string> = { "content-length": String(body.length) };
    if (m) headers["content-range"] = `bytes ${start}-${bytes.length - 1}/${bytes.length}`;
    const status = m ? 206 : 200;
    if (!this.interrupt.delete(blob.path)) return new Response(body, { status, headers });
    const half = body.slice(0, body.length >> 1);
    let sent = false;
    const stream = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (!sent) {
          sent = true;
          return c.enqueue(half);
        }
        await new Promise((r) => setTimeout(r, 50)); // let the half reach the client first
        c.error(new Error("transfer cut by the test (expected)"));
      },
    });
    return new Response(stream, { status, headers });
  }
}

function error(status: number, code: string): Response {
  return new Response(JSON.stringify({ error: code }), { status, headers: { "x-error-code": code } });
}

/** The files of a fixture model folder (all of them, symlinks followed), by name. */
export async function folderFiles(dir: string): Promise<Record<string, Uint8Array>> {
  const out: Record<string, Uint8Array> = {};
  for await (const e of Deno.readDir(dir)) out[e.name] = await Deno.readFile(`${dir}/${e.name}`);
  return out;
}

/**
 * `flexora serve` (also `deno task serve`): the sidecar, and optionally the embedded inference server.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { PLUGINS } from "../../plugins/mod.ts";
import type { ServerConfig } from "../../plugins/types.ts";
import { loadModel } from "../model/model.ts";
import { createSidecar } from "../serve/app.ts";
import { createEmbeddedApp } from "../serve/embedded/app.ts";
import { generateToken, isLoopback } from "../serve/security.ts";
import { numberOption } from "./args.ts";
import { type Command, UsageError } from "./command.ts";

/** The token: `FLEXORA_TOKEN`, else the one stored in the data dir, else a new one (stored, and printed once). */
async function resolveToken(dataDir: string, print: (line: string) => void): Promise<string> {
  const fromEnv = Deno.env.get("FLEXORA_TOKEN");
  if (fromEnv) return fromEnv;
  const file = join(dataDir, "token");
  const stored = await Deno.readTextFile(file).catch(() => null);
  if (stored) return stored.trim();
  const token = generateToken();
  await Deno.writeTextFile(file, token + "\n", { mode: 0o600 });
  print(`generated a bearer token (stored in ${file}; shown once): ${token}`);
  return token;
}

/** Servers from a JSON file: `[{"name", "kind", "url", "token"?, "baseModel"?, "options"?}]`. */
async function readServers(file: string): Promise<ServerConfig[]> {
  const json = JSON.parse(
    await Deno.readTextFile(file).catch((e) => {
      throw new UsageError(`--servers ${file}: cannot read (${(e as Error).message})`);
    }),
  );
  if (!Array.isArray(json)) throw new UsageError(`--servers ${file}: expected a JSON array of servers`);
  return json;
}

export const serveCommand: Command = {
  name: "serve",
  summary: "run the sidecar (jobs, adapters, attach) and optionally the embedded inference server",
  usage: "[--host H] [--port P] [--data-dir DIR] [--root DIR]... [--servers FILE] [--embedded-model DIR] " +
    "[--embedded-port P]",
  options: {
    host: { type: "string" },
    port: { type: "string" },
    "data-dir": { type: "string" },
    root: { type: "string", multiple: true },
    servers: { type: "string" },
    "embedded-model": { type: "string" },
    "embedded-port": { type: "string" },
  },
  help: {
    host: "H  address to listen on (default 127.0.0.1; off loopback every route needs the token)",
    port: "P  sidecar port (default 8321)",
    "data-dir": "DIR  jobs database, checkpoints and adapters (default .flexora)",
    root: "DIR  a folder model and data paths may lie in (repeatable; default: the current folder)",
    servers: "FILE  JSON array of inference servers {name, kind, url, token?, baseModel?, options?}",
    "embedded-model": "DIR  also serve this model with the embedded inference server, as server 'embedded'",
    "embedded-port": "P  embedded server port (default: sidecar port + 1)",
  },
  async run(values, _positionals, io) {
    const host = (values.host as string | undefined) ?? "127.0.0.1";
    const port = numberOption(values, "port", { integer: true, min: 0, max: 65535 }) ?? 8321;
    const dataDir = resolve((values["data-dir"] as string | undefined) ?? ".flexora");
    await Deno.mkdir(dataDir, { recursive: true });
    const roots = ((values.root as string[] | undefined) ?? ["."]).map((r) => resolve(r));
    const servers = typeof values.servers === "string" ? await readServers(values.servers) : [];
    const token = await resolveToken(dataDir, io.err);
    const closers: (() => Promise<void>)[] = [];
    if (typeof values["embedded-model"] === "string") {
      const embeddedPort = numberOption(values, "embedded-port", { integer: true, min: 0, max: 65535 }) ??
        port + 1;
      const model = await loadModel(values["embedded-model"]);
      const embedded = createEmbeddedApp({
        model,
        allowedAdapterRoots: [join(dataDir, "adapters"), ...roots],
      });
      const server = Deno.serve(
        { hostname: "127.0.0.1", port: embeddedPort, onListen: () => {} },
        embedded.app.fetch,
      );
      servers.push({
        name: "embedded",
        kind: "embedded",
        url: `http://127.0.0.1:${server.addr.port}`,
        baseModel: model.dir,
      });
      io.err(`embedded inference server for ${model.dir} on http://127.0.0.1:${server.addr.port}`);
      closers.push(async () => (await server.shutdown(), await embedded.close()));
    }
    const sidecar = await createSidecar({
      dataDir,
      token,
      host,
      modelRoots: roots,
      dataRoots: roots,
      servers,
    }, PLUGINS);
    const http = Deno.serve({ hostname: host, port, onListen: () => {} }, sidecar.app.fetch);
    io.err(
      `flexora sidecar on http://${host}:${http.addr.port} (data in ${dataDir}${
        isLoopback(host) ? "" : "; every route needs the token"
      })`,
    );
    const stop = new Promise<void>((done) => {
      for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, () => done());
    });
    await stop;
    io.err("stopping: the running job checkpoints and resumes at the next start");
    await http.shutdown();
    await sidecar.close();
    for (const close of closers) await close();
    return 0;
  },
};

/**
 * `flexora serve` (also `deno task serve`): the sidecar, and optionally the embedded inference server.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { PLUGINS } from "../../plugins/mod.ts";
import { loadModel } from "../model/model.ts";
import { modelFolder } from "./model_options.ts";
import { createSidecar } from "../serve/app.ts";
import { type DeploymentConfig, parseServers } from "../serve/deployments.ts";
import type { ReconcileEvent } from "../serve/reconcile/mod.ts";
import { parseStoreUrl } from "../serve/store/mod.ts";
import { createEmbeddedApp } from "../serve/embedded/app.ts";
import {
  allowedHosts,
  checkToken,
  generateToken,
  isLoopback,
  privateDataDir,
  redactSecrets,
} from "../serve/security.ts";
import { type Device, DEVICES, resolveDevice } from "../runtime/device.ts";
import { formatPlacement } from "../runtime/placement.ts";
import { choiceOption, numberOption } from "./args.ts";
import { type Command, type Io, UsageError } from "./command.ts";

/**
 * The token: `FLEXORA_TOKEN` when set, else the one stored in the data dir, else a new one (stored, and printed
 * once); checked by `checkToken` (an empty one stops the start, a short one off loopback too). Warns when the
 * token file was readable by group or others (the start then makes it 0600).
 */
export async function resolveToken(
  dataDir: string,
  host: string,
  print: (line: string) => void,
): Promise<string> {
  const check = (token: string, source: string) => {
    try {
      const warning = checkToken(token, source, host);
      if (warning) print(`warning: ${warning}`);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    return token;
  };
  const fromEnv = Deno.env.get("FLEXORA_TOKEN");
  if (fromEnv !== undefined) return check(fromEnv, "FLEXORA_TOKEN");
  const file = join(dataDir, "token");
  const info = await Deno.stat(file).catch(() => null);
  if (info) {
    const mode = (info.mode ?? 0) & 0o777;
    if (mode & 0o077) {
      print(
        `warning: the token file ${file} was readable by group or others (mode ${
          mode.toString(8)
        }); it is now ` +
          "600. If others could read it, replace the token",
      );
    }
    return check((await Deno.readTextFile(file)).trim(), `the token file ${file}`);
  }
  const token = generateToken();
  await Deno.writeTextFile(file, token + "\n", { mode: 0o600 });
  print(`generated a bearer token (stored in ${file}; shown once): ${token}`);
  return token;
}

/** Servers from a JSON file: `[{"name", "kind", "url" | "replicas", "token"?, "baseModel"?, "options"?}]`. */
async function readServers(file: string): Promise<DeploymentConfig[]> {
  const text = await Deno.readTextFile(file).catch((e) => {
    throw new UsageError(`--servers ${file}: cannot read (${(e as Error).message})`);
  });
  try {
    return parseServers(JSON.parse(text), `--servers ${file}`);
  } catch (e) {
    throw new UsageError(e instanceof SyntaxError ? `--servers ${file}: ${e.message}` : (e as Error).message);
  }
}

/** Serve's log: lines on stderr, with the credentials of any server URL they quote redacted. */
export function serveLog(io: Io): (line: string) => void {
  return (line) => io.err(redactSecrets(line));
}

/** Logs what the reconcile loop changed, and each replica's turns between failing and healthy. */
export function reconcileLog(print: (line: string) => void): (e: ReconcileEvent) => void {
  const failing = new Set<string>();
  return (e) => {
    const where = `server '${e.server}' replica ${e.url}`;
    if (e.trigger !== "loop") return; // attach and detach answer for themselves
    for (const o of e.outcomes) {
      const changed = ["attached", "repaired", "swapped", "detached"].includes(o.action);
      if (changed) {
        print(`reconcile: ${o.action} '${o.name}'${o.version ? ` (version ${o.version})` : ""} on ${where}`);
      }
      if (o.action === "failed" && !o.transient) print(`reconcile: '${o.name}' on ${where}: ${o.error}`);
    }
    if (e.error !== null && !failing.has(e.url)) print(`reconcile: ${where} is failing: ${e.error}`);
    if (e.error === null && failing.has(e.url)) print(`reconcile: ${where} is healthy again`);
    if (e.error === null) failing.delete(e.url);
    else failing.add(e.url);
  };
}

/** `--store`, else `FLEXORA_STORE`, checked (a bad URL is a usage error naming where it came from); or none. */
export function storeOption(values: Record<string, unknown>): string | undefined {
  const given = values.store as string | undefined;
  const url = given ?? Deno.env.get("FLEXORA_STORE");
  if (url === undefined || url === "") return undefined;
  try {
    parseStoreUrl(url);
  } catch (e) {
    throw new UsageError(`${given === undefined ? "FLEXORA_STORE" : "--store"}: ${(e as Error).message}`);
  }
  return url;
}

export const serveCommand: Command = {
  name: "serve",
  summary: "run the sidecar (jobs, adapters, attach) and optionally the embedded inference server",
  usage:
    "[--host H] [--allowed-host NAME]... [--port P] [--data-dir DIR] [--store URL] [--root DIR]... [--allow-hub] [--allow-hub-from LIST] " +
    "[--servers FILE] [--embedded-model DIR] " +
    "[--embedded-port P] [--device D] [--reconcile-interval S] [--reconcile-jitter F] [--reconcile-max-backoff S] " +
    "[--heartbeat S]",
  options: {
    host: { type: "string" },
    "allowed-host": { type: "string", multiple: true },
    port: { type: "string" },
    "data-dir": { type: "string" },
    store: { type: "string" },
    root: { type: "string", multiple: true },
    "allow-hub": { type: "boolean" },
    "allow-hub-from": { type: "string" },
    servers: { type: "string" },
    "embedded-model": { type: "string" },
    "embedded-port": { type: "string" },
    device: { type: "string" },
    "reconcile-interval": { type: "string" },
    "reconcile-jitter": { type: "string" },
    "reconcile-max-backoff": { type: "string" },
    heartbeat: { type: "string" },
  },
  help: {
    host: "H  address to listen on (default 127.0.0.1; off loopback every route needs the token)",
    "allowed-host":
      "NAME  a name requests may give as Host besides localhost and the --host address (repeatable; checked " +
      "against DNS rebinding on loopback, and off loopback once one is given)",
    port: "P  sidecar port (default 8321)",
    "data-dir": "DIR  jobs database, checkpoints and adapters (default .flexora)",
    store: "URL  the jobs database: sqlite:PATH, or postgres://user:password@host:port/db shared by many " +
      "sidecars (default: FLEXORA_STORE, else jobs.sqlite in the data dir)",
    root: "DIR  a folder model and data paths may lie in (repeatable; default: the current folder)",
    "allow-hub": "jobs may name any Hub model id (org/name[@revision]); the job downloads it (docs/hub.md)",
    "allow-hub-from": "LIST  jobs may name Hub models of these ids and organisations only (org,org/name)",
    servers:
      "FILE  JSON array of inference servers {name, kind, url | replicas, token?, baseModel?, options?}",
    "embedded-model":
      "DIR|ID  also serve this model (a folder or a Hub id) with the embedded inference server, as server " +
      "'embedded'",
    "embedded-port": "P  embedded server port (default: sidecar port + 1)",
    device:
      `D  ${DEVICES.join("|")}: where jobs train and the embedded server runs (default auto: the best ` +
      "available, logged)",
    "reconcile-interval": "S  seconds between two checks of each replica's adapters (default 15)",
    "reconcile-jitter": "F  each wait is the interval times 1 ± F, drawn at random (default 0.1)",
    "reconcile-max-backoff": "S  longest wait before retrying a failing replica (default 300)",
    heartbeat:
      "S  seconds between renewals of a running job's lease and checks of the shared queue (default 5); a lease " +
      "lasts three, after which another sidecar resumes a dead one's job (docs/scale.md)",
  },
  async run(values, _positionals, io) {
    // Log lines can quote a server's URL (reconcile errors): its credentials are not printed.
    const log = serveLog(io);
    const host = (values.host as string | undefined) ?? "127.0.0.1";
    const port = numberOption(values, "port", { integer: true, min: 0, max: 65535 }) ?? 8321;
    const dataDir = resolve((values["data-dir"] as string | undefined) ?? ".flexora");
    const store = storeOption(values);
    await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
    const token = await resolveToken(dataDir, host, log); // before the data dir is tightened: it warns
    await privateDataDir(dataDir);
    const allowed = (values["allowed-host"] as string[] | undefined) ?? [];
    const roots = ((values.root as string[] | undefined) ?? ["."]).map((r) => resolve(r));
    const servers = typeof values.servers === "string" ? await readServers(values.servers) : [];
    const seconds = (name: string) => {
      const n = numberOption(values, name, { positive: true });
      return n === undefined ? undefined : n * 1000;
    };
    const reconcile = {
      intervalMs: seconds("reconcile-interval"),
      jitter: numberOption(values, "reconcile-jitter", { min: 0, max: 0.99 }),
      maxBackoffMs: seconds("reconcile-max-backoff"),
    };
    // Resolved once here (an unavailable device stops the start); jobs get the concrete choice.
    const { device, providers } = await resolveDevice(
      choiceOption<Device>(values, "device", DEVICES, "auto"),
      log,
    );
    const closers: (() => Promise<void>)[] = [];
    if (typeof values["embedded-model"] === "string") {
      const embeddedPort = numberOption(values, "embedded-port", { integer: true, min: 0, max: 65535 }) ??
        port + 1;
      const model = await loadModel(await modelFolder(values["embedded-model"], io), {
        providers,
        onPlacement: providers[0] === "cpu" ? undefined : (p) => log(formatPlacement(p)),
      });
      const embedded = createEmbeddedApp({
        model,
        allowedAdapterRoots: [join(dataDir, "adapters"), ...roots],
        allowedHosts: allowedHosts("127.0.0.1"), // it binds loopback and has no token
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
      log(`embedded inference server for ${model.dir} on http://127.0.0.1:${server.addr.port}`);
      closers.push(async () => (await server.shutdown(), await embedded.close()));
    }
    const sidecar = await createSidecar(
      {
        dataDir,
        store,
        token,
        host,
        allowedHosts: allowed,
        allowHub: values["allow-hub"] === true ||
          (typeof values["allow-hub-from"] === "string" &&
            String(values["allow-hub-from"]).split(",").map((s) => s.trim()).filter((s) => s !== "")),
        modelRoots: roots,
        dataRoots: roots,
        servers,
        device,
        reconcile: Object.fromEntries(Object.entries(reconcile).filter(([, v]) => v !== undefined)),
        heartbeatMs: seconds("heartbeat"),
      },
      PLUGINS,
      { onReconcile: reconcileLog(log) },
    );
    const http = Deno.serve({ hostname: host, port, onListen: () => {} }, sidecar.app.fetch);
    log(
      `flexora sidecar on http://${host}:${http.addr.port} (data in ${dataDir}, store ${sidecar.store.url}${
        isLoopback(host) ? "" : "; every route needs the token"
      })`,
    );
    const stop = new Promise<void>((done) => {
      for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, () => done());
    });
    await stop;
    log("stopping: the running job checkpoints and resumes at the next start");
    await http.shutdown();
    await sidecar.close();
    for (const close of closers) await close();
    return 0;
  },
};

/**
 * A sidecar for route tests: temp data and roots, a fake runner speaking the real event protocol, and a stub
 * plugin table whose `embedded` entry records attaches (the real plugins have their own conformance suite).
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { PLUGINS } from "../../plugins/mod.ts";
import type { AdapterRef, CallContext, ServerKind, ServerPlugin } from "../../plugins/types.ts";
import { AttachError } from "../../plugins/types.ts";
import { createSidecar, type Sidecar } from "../../src/serve/app.ts";
import { SqliteStore } from "../../src/serve/store/mod.ts";
import { writeFlexoraJson } from "../flexora/report_fixture.ts";
import type { SidecarConfig } from "../../src/serve/deps.ts";
import type { DeploymentConfig } from "../../src/serve/deployments.ts";
import type { ProgressEvent } from "../../src/flexora/progress.ts";
import type { RunnerExit, RunnerHandle, Spawn } from "../../src/serve/spawn.ts";
import {
  decodeEvent,
  encodeEvent,
  readSpec,
  type RunnerEvent,
  type RunnerSpec,
  type RunSummary,
} from "../../src/serve/protocol.ts";

export const TOKEN = "test-token-0123456789";

/** A valid run summary for fake runners. */
export function fakeSummary(out: string, selectedLayers = [0]): RunSummary {
  return { method: "flexora", adapter: out, selectedLayers, trainableParams: 0, timings: {} };
}

/**
 * A fake runner's script: its events, from its spec; `stopped` settles when the sidecar asks it to stop, and
 * `die(signal)` ends the runner there as that signal would (the OOM killer's SIGKILL).
 */
export type FakeScript = (
  spec: RunnerSpec,
  stopped: Promise<void>,
  die: (signal: Deno.Signal) => Promise<never>,
) => AsyncIterable<RunnerEvent>;

/**
 * A spawner of in-process fake runners speaking the real protocol: the spec is read with the protocol's reader,
 * and every event goes through its encoder and decoder, so a fake that strays from the protocol fails the test.
 * `kills` records the signals the sidecar sent; a SIGKILL ends the fake at once (SIGTERM too, unless
 * `ignoreTerm`).
 */
export function fakeRunner(
  script: FakeScript,
  options: { kills?: string[]; ignoreTerm?: boolean } = {},
): Spawn {
  return (specFile: string): RunnerHandle => {
    let release: () => void = () => {}, killed: (s: Deno.Signal) => void = () => {};
    const stopped = new Promise<void>((r) => (release = r));
    const death = new Promise<Deno.Signal>((r) => (killed = r));
    let exit: (e: RunnerExit) => void = () => {};
    const exited = new Promise<RunnerExit>((r) => (exit = r));
    async function* events(): AsyncIterable<RunnerEvent> {
      const die = (signal: Deno.Signal) => (killed(signal), new Promise<never>(() => {}));
      const it = script(await readSpec(specFile), stopped, die)[Symbol.asyncIterator]();
      for (;;) {
        const next = await Promise.race([it.next(), death]);
        if (typeof next === "string") return exit({ code: 1, signal: next });
        if (next.done) return exit({ code: 0, signal: null });
        yield decodeEvent(encodeEvent(next.value));
      }
    }
    return {
      events: events(),
      stop: () => release(),
      kill: (signal) => {
        options.kills?.push(signal);
        if (signal === "SIGKILL" || !options.ignoreTerm) killed(signal);
      },
      exited,
    };
  };
}

/** A fake runner: a few progress events, then an adapter folder and a result (or an error). */
export function fakeSpawn(behaviour: { fail?: boolean; hold?: Promise<void> } = {}): Spawn {
  return fakeRunner(async function* (spec, stopped) {
    let stop = false;
    stopped.then(() => (stop = true));
    yield { type: "start", stage: "search", step: 0, total: 2, seconds: 0 };
    yield {
      type: "progress",
      event: progress("search", 1, 2, { loss: 2.5, valLoss: 2.6, gates: [1.2, 0.8] }),
    };
    if (behaviour.hold) await Promise.race([behaviour.hold, stopped]);
    if (stop) return yield { type: "stopped", message: "search stopped at step 1 of 2" };
    yield {
      type: "progress",
      event: progress("search", 2, 2, { loss: 2.4, valLoss: 2.5, gates: [1.4, 0.6] }),
    };
    yield { type: "start", stage: "retrain", step: 0, total: 1, seconds: 0 };
    yield { type: "progress", event: progress("retrain", 1, 1, { loss: 2.0 }) };
    if (behaviour.fail) {
      return yield {
        type: "error",
        name: "DivergedError",
        message: "retrain: the lora loss became NaN at step 1",
      };
    }
    yield { type: "progress", event: progress("export", 0, 1) };
    await Deno.mkdir(spec.out, { recursive: true });
    await Deno.writeTextFile(
      join(spec.out, "adapter_config.json"),
      JSON.stringify({ peft_type: "LORA", r: 8 }),
    );
    await writeFlexoraJson(spec.out, {
      method: "flexora",
      selectedLayers: [0],
      gates: { logits: [0.2, -0.2], values: [1.4, 0.6] },
    });
    yield { type: "result", summary: fakeSummary(spec.out) };
  });
}

/** A progress event. */
export function progress(
  stage: ProgressEvent["stage"],
  step: number,
  total: number,
  extra: Partial<ProgressEvent> = {},
): ProgressEvent {
  return { stage, step, total, elapsed: step, eta: total - step, ...extra };
}

/**
 * A plugin that records attaches; `failAttach` makes them fail as a server would, and `transientFailures` makes
 * the first that many fail with a 503 (which the reconcile loop retries).
 */
export function stubPlugins(
  failAttach = false,
  transientFailures = 0,
): { plugins: { [K in ServerKind]: ServerPlugin }; attached: AdapterRef[] } {
  const attached: AdapterRef[] = [];
  const plugin: ServerPlugin = {
    kind: "embedded",
    capabilities: () => ({ load: true, unload: true, list: true, generate: true }),
    attach(server, adapter) {
      if (failAttach) {
        return Promise.reject(new AttachError(`${server.name}: 500 Internal Server Error: out of memory`));
      }
      if (transientFailures > 0) {
        transientFailures--;
        return Promise.reject(new AttachError(`${server.name}: 503 Service Unavailable`, { status: 503 }));
      }
      attached.push(adapter);
      const verification = { listed: true, changesOutput: true, detail: "stub" };
      return Promise.resolve({
        server: server.name,
        adapter: adapter.name,
        verification,
        attempts: 1,
        millis: 1,
      });
    },
    detach: () => Promise.resolve(),
    list: () => Promise.resolve(attached.map((a) => a.name)),
    verify: () => Promise.resolve({ listed: true, changesOutput: true, detail: "stub" }),
    reachable: () => Promise.resolve(true),
  };
  const kinds: ServerKind[] = ["vllm", "sglang", "lorax", "llamacpp", "ollama", "embedded"];
  return { plugins: Object.fromEntries(kinds.map((k) => [k, { ...plugin, kind: k }])) as never, attached };
}

const FIXTURES = fromFileUrl(new URL("../../fixtures/", import.meta.url));

/** Copies the fixture model to `<dir>/m` and the fixture data to `<dir>/d` (what a submit reads). */
export async function copyFixtures(dir: string): Promise<void> {
  await copyFolder(join(FIXTURES, "tiny-llama"), join(dir, "m"));
  await copyFolder(join(FIXTURES, "tiny-data"), join(dir, "d"));
}

/** Copies the files of folder `from` into a new folder `to`. */
async function copyFolder(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isFile) await Deno.copyFile(join(from, entry.name), join(to, entry.name));
  }
}

/** A test sidecar and its helpers. */
export interface TestSidecar extends Sidecar {
  readonly dir: string;
  readonly attached: AdapterRef[];
  request(path: string, init?: RequestInit): Promise<Response>;
  /** A valid job body with absolute model and data paths inside the test roots. */
  body(extra?: Record<string, unknown>): string;
}

/** A sidecar in a temp dir with model and data roots holding a `model/` and `data/` folder. */
export async function testSidecar(
  options: {
    spawn?: Spawn;
    failAttach?: boolean;
    transientFailures?: number;
    maxQueued?: number;
    host?: string;
    dataDir?: string;
    /** The store's URL (default: jobs.sqlite in the data dir). */
    store?: string;
    stopGraceMs?: number;
    maxRetries?: number;
    reconcile?: SidecarConfig["reconcile"];
    /** Servers besides "local" (the stub), each taken by the real plugin of its kind. */
    servers?: DeploymentConfig[];
    call?: CallContext;
    allowedHosts?: string[];
    token?: string;
    allowHub?: boolean | string[];
    /** The sidecar's device (`serve --device`, as resolved at its start). */
    device?: SidecarConfig["device"];
    sidecarId?: string;
    heartbeatMs?: number;
  } = {},
): Promise<TestSidecar> {
  const dir = options.dataDir
    ? join(options.dataDir, "..")
    : await Deno.makeTempDir({ prefix: "flexora-sidecar-" });
  // Real (tiny) model files and data: a submit reads the model's config and tokenizer and the data.
  await copyFolder(join(FIXTURES, "tiny-llama"), join(dir, "models", "m"));
  await copyFolder(join(FIXTURES, "tiny-data"), join(dir, "datasets", "d"));
  const { plugins, attached } = stubPlugins(options.failAttach, options.transientFailures);
  const sidecar = await createSidecar(
    {
      dataDir: options.dataDir ?? join(dir, "state"),
      store: options.store,
      token: options.token ?? TOKEN,
      host: options.host ?? "127.0.0.1",
      allowedHosts: options.allowedHosts,
      modelRoots: [join(dir, "models")],
      dataRoots: [join(dir, "datasets")],
      servers: [{ name: "local", kind: "embedded", url: "http://127.0.0.1:9" }, ...options.servers ?? []],
      maxQueued: options.maxQueued,
      allowHub: options.allowHub,
      device: options.device,
      stopGraceMs: options.stopGraceMs,
      maxRetries: options.maxRetries,
      reconcile: options.reconcile,
      sidecarId: options.sidecarId,
      heartbeatMs: options.heartbeatMs,
    },
    options.servers
      ? { ...plugins, ...Object.fromEntries(options.servers.map((s) => [s.kind, PLUGINS[s.kind]])) }
      : plugins,
    { spawn: options.spawn ?? fakeSpawn(), call: options.call },
  );
  const request = (path: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    if (!headers.has("authorization")) headers.set("authorization", `Bearer ${TOKEN}`);
    if (init.body && !headers.has("content-type")) headers.set("content-type", "application/json");
    return Promise.resolve(sidecar.app.request(path, { ...init, headers }));
  };
  return { ...sidecar, dir, attached, request, body: (extra = {}) => jobBody(dir, extra) };
}

/** A valid job body for a test sidecar in `dir`. */
export function jobBody(dir: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model: join(dir, "models", "m"),
    data: join(dir, "datasets", "d"),
    name: "demo",
    ...extra,
  });
}

/** Polls a job until it reaches a final state. */
export async function waitFor(
  request: (path: string) => Promise<Response>,
  id: string,
  states = ["succeeded", "failed", "attach_failed", "cancelled", "interrupted"],
): Promise<Record<string, unknown>> {
  for (let i = 0; i < 500; i++) {
    const job = await (await request(`/v1/jobs/${id}`)).json();
    if (states.includes(job.state)) return job;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`job ${id} did not reach ${states}`);
}

/**
 * A data dir (`<dir>/state`) whose store holds job "crashed" as a sidecar that died mid-run left it: created, never
 * finished. The store stays open for the test to add points and a state, and to close.
 */
export async function crashedJobStore(
  prefix: string,
): Promise<{ dir: string; dataDir: string; store: SqliteStore }> {
  const dir = await Deno.makeTempDir({ prefix });
  const dataDir = join(dir, "state");
  await Deno.mkdir(dataDir, { recursive: true });
  const store = new SqliteStore(join(dataDir, "jobs.sqlite"));
  await store.create("crashed", {
    model: join(dir, "models/m"),
    data: join(dir, "datasets/d"),
    name: "demo",
    options: {},
  });
  return { dir, dataDir, store };
}

/**
 * A test sidecar with one job submitted, held in its search (state "searching") by a fake runner until `release`
 * is called. The caller releases and closes it; it is closed here only when the job could not be started.
 */
export async function heldJob(): Promise<{ s: TestSidecar; id: string; release: () => void }> {
  let release: () => void = () => {};
  const hold = new Promise<void>((r) => (release = r));
  const s = await testSidecar({ spawn: fakeSpawn({ hold }) });
  try {
    const { id } = await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json();
    await waitFor(s.request, id, ["searching"]);
    return { s, id, release };
  } catch (e) {
    release();
    await s.close();
    throw e;
  }
}

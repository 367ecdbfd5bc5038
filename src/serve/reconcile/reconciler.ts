/**
 * The reconcile loop: keeps every replica of every configured server serving what the desired table says.
 *
 * Each replica has its own loop ({@link ./schedule.ts}: the interval with jitter, exponential backoff while it
 * fails) and its own lock, so a pass, an attach and a detach on one replica never interleave. Attach and detach
 * change the desired table first, then act on the replicas one by one and report per replica; the loop repairs
 * what they could not reach.
 *
 * Sidecars sharing a store (`fleet`): the loop of a deployment runs only on the holder of the lease
 * `reconcile:<server>` ({@link ../lease.ts}), taken for half an interval and renewed, so a new leader takes over
 * within about two thirds of an interval of the old one's death and passes within the next interval. Each
 * replica's lock is held across sidecars too (the lease `replica:<server>:<index>`, for the pass timeout): a pass,
 * an attach and a detach on one replica never interleave, whichever sidecars run them.
 *
 * @module
 */

import type {
  AdapterRef,
  CallContext,
  ServerConfig,
  ServerKind,
  ServerPlugin,
} from "../../../plugins/types.ts";
import { type DeploymentConfig, replicasOf } from "../deployments.ts";
import { Leadership, type LeaseTable } from "../lease.ts";
import type { Attachment, Desired, DesiredStore } from "../store/mod.ts";
import { Mutex } from "./lock.ts";
import { ensureAbsent, reconcileReplica, type Target } from "./pass.ts";
import { type Outcome, type ReplicaReport, ReplicaState } from "./replica.ts";
import { type Clock, nextDelay, realClock, type ReconcileSettings, reconcileSettings } from "./schedule.ts";

/** What happened on one replica, as attach, detach and the loop's events report it. */
export type ReplicaOutcome = Outcome & { readonly url: string };

/** A finished pass or operation on one replica. */
export interface ReconcileEvent {
  readonly trigger: "loop" | "attach" | "detach";
  readonly server: string;
  readonly url: string;
  /** When it started (ms since the epoch) and how long it took. */
  readonly startedAt: number;
  readonly millis: number;
  readonly outcomes: readonly Outcome[];
  /** Why the pass failed (the replica could not be listed, or a transient failure), or null. */
  readonly error: string | null;
}

/** Options of a {@link Reconciler}. */
export interface ReconcilerOptions {
  readonly store: DesiredStore;
  readonly servers: readonly DeploymentConfig[];
  readonly plugins: { readonly [K in ServerKind]: ServerPlugin };
  readonly call: CallContext;
  readonly settings?: Partial<ReconcileSettings>;
  readonly clock?: Clock;
  /** Called after every pass and operation (logging, tests). */
  readonly onEvent?: (e: ReconcileEvent) => void;
  /** The leases shared with the other sidecars of the store, and this sidecar's id (see the module doc). */
  readonly fleet?: { readonly leases: LeaseTable; readonly holder: string };
  /**
   * Makes an adapter's folder exist on this host before a replica loads it (a shared store writes it from its
   * copy: the job may have trained on another host).
   */
  readonly ensureAdapter?: (ref: AdapterRef) => Promise<void>;
}

/** A configured server in `GET /v1/servers`: its desired rows and its replicas. */
export interface ServerState {
  readonly name: string;
  readonly desired: readonly Desired[];
  readonly replicas: readonly ReplicaReport[];
  /** Whether this sidecar runs the deployment's loop (always, alone on its store). */
  readonly leader: boolean;
}

interface Replica {
  readonly server: ServerConfig;
  readonly state: ReplicaState;
  readonly lock: Mutex;
}

interface Deployment {
  readonly config: DeploymentConfig;
  readonly replicas: readonly Replica[];
  readonly rollout: Mutex;
  /** Who runs the loop, among sidecars sharing the store; null alone. */
  readonly leadership: Leadership | null;
}

/**
 * Keeps the desired attachments true on every replica (see the module doc; {@link ./operations.ts} attaches and
 * detaches through it).
 *
 * @example
 * ```ts
 * import { PLUGINS } from "../../../plugins/mod.ts";
 * import { Reconciler } from "./mod.ts";
 * import { SqliteStore } from "../store/mod.ts";
 * const store = new SqliteStore(":memory:");
 * const servers = [{ name: "vllm-a", kind: "vllm" as const, url: "http://127.0.0.1:9", replicas: ["http://127.0.0.1:9"] }];
 * const reconciler = new Reconciler({ store: store.desired, servers, plugins: PLUGINS, call: { fetch }, settings: { intervalMs: 1000 } });
 * reconciler.start(); // nothing is desired: no replica is contacted
 * await reconciler.stop();
 * const [server] = await reconciler.report();
 * if (server.replicas[0].state !== "pending" || reconciler.settings.jitter !== 0.1) throw new Error("defaults");
 * await store.close();
 * ```
 */
export class Reconciler {
  readonly settings: ReconcileSettings;
  readonly #o: ReconcilerOptions;
  readonly #clock: Clock;
  readonly #deployments = new Map<string, Deployment>();
  readonly #stopping = new AbortController();
  #loops: Promise<void>[] = [];

  constructor(options: ReconcilerOptions) {
    this.#o = options;
    this.settings = reconcileSettings(options.settings);
    this.#clock = options.clock ?? realClock;
    for (const config of options.servers) {
      const replicas = replicasOf(config).map((server) => ({
        server,
        state: new ReplicaState(config.name, server.url),
        lock: new Mutex(),
      }));
      const fleet = options.fleet;
      const leadership = fleet
        ? new Leadership({
          table: fleet.leases,
          name: `reconcile:${config.name}`,
          holder: fleet.holder,
          ttlMs: this.settings.intervalMs / 2,
        })
        : null;
      this.#deployments.set(config.name, { config, replicas, rollout: new Mutex(), leadership });
    }
  }

  /** Starts one loop per replica; they end when `signal` aborts or {@link stop} is called. */
  start(signal?: AbortSignal): void {
    const stop = signal ? AbortSignal.any([signal, this.#stopping.signal]) : this.#stopping.signal;
    for (const d of this.#deployments.values()) {
      const led = d.leadership?.start() ?? Promise.resolve(true);
      for (const r of d.replicas) this.#loops.push(this.#loop(d, r, stop, led));
    }
  }

  /** Stops the loops (a pass in flight is aborted) and waits for them. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    await Promise.all(this.#loops);
    await Promise.all([...this.#deployments.values()].map((d) => d.leadership?.stop()));
  }

  /** The deployment `server`; throws when it is not configured. */
  #deployment(server: string): Deployment {
    const d = this.#deployments.get(server);
    if (!d) throw new Error(`no server '${server}' is configured`);
    return d;
  }

  async #loop(d: Deployment, r: Replica, signal: AbortSignal, led: Promise<unknown>): Promise<void> {
    const s = this.settings, clock = this.#clock;
    await led; // who leads is known before the first pass
    let delay = clock.random() * s.intervalMs * s.jitter; // the first passes soon after start, spread out
    while (!signal.aborted) {
      r.state.nextAttempt = clock.now() + delay;
      await clock.sleep(delay, signal);
      if (signal.aborted) break;
      // A replica is contacted only when its server has desired rows: otherwise there is nothing to keep true.
      // Nothing may end the loop but the signal (an unexpected error is the replica's last error).
      try {
        const leads = d.leadership?.leader ?? true; // another sidecar runs this deployment's loop
        if (leads && (await this.#o.store.list(d.config.name)).length > 0) await this.#pass(d, r, "loop");
      } catch (e) {
        r.state.lastError = e instanceof Error ? e.message : String(e);
      }
      delay = nextDelay(s, r.state.failures, clock.random());
    }
    r.state.nextAttempt = null;
  }

  /** A pass on one replica, under its lock (`force`: the name an explicit attach asked for). */
  #pass(d: Deployment, r: Replica, trigger: "loop" | "attach", force?: string) {
    return this.#locked(d, r, trigger, async (t) => {
      const { outcomes, error } = await this.#o.store.list(d.config.name)
        .then((rows) => reconcileReplica(t, rows, force))
        .catch((e) => ({ outcomes: [], error: e instanceof Error ? e.message : String(e) }));
      return { outcomes, error };
    });
  }

  /** Runs `work` on `r` under its lock with a pass timeout; records the pass and reports the event. */
  #locked(
    d: Deployment,
    r: Replica,
    trigger: ReconcileEvent["trigger"],
    work: (t: Target) => Promise<{ outcomes: Outcome[]; error: string | null }>,
  ): Promise<{ outcomes: Outcome[]; error: string | null }> {
    return r.lock.run(async () => {
      const started = this.#clock.now();
      const timeout = new AbortController();
      const timer = setTimeout(
        () => timeout.abort(new DOMException("the pass took too long", "TimeoutError")),
        this.settings.passTimeoutMs,
      );
      const signal = AbortSignal.any([this.#stopping.signal, timeout.signal]);
      const release = await this.#holdReplica(d, r, signal).catch((e) => {
        clearTimeout(timer);
        throw e;
      });
      // The loop is the retry: its passes make one retry at most.
      const retries = trigger === "loop" ? Math.min(this.#o.call.retries ?? 1, 1) : this.#o.call.retries;
      const t: Target = {
        plugin: this.#o.plugins[d.config.kind],
        server: r.server,
        call: { ...this.#o.call, retries, signal },
        state: r.state,
        rollout: d.rollout,
        now: () => this.#clock.now(),
        ensureAdapter: this.#o.ensureAdapter,
      };
      const result = await work(t).finally(() => (clearTimeout(timer), release()));
      if (trigger !== "detach") r.state.finishPass(started, result.outcomes, result.error);
      await this.#forgetCleared(d).catch(() => {}); // a store that failed now is asked again after the next pass
      const event = { trigger, server: d.config.name, url: r.server.url, startedAt: started, ...result };
      try {
        this.#o.onEvent?.({ ...event, millis: this.#clock.now() - started });
      } catch {
        // A listener's failure is not the pass's.
      }
      return result;
    });
  }

  /** Drops tombstones that every replica of `d` was seen without. */
  async #forgetCleared(d: Deployment): Promise<void> {
    for (const row of await this.#o.store.list(d.config.name)) {
      if (row.state !== "detached") continue;
      if (d.replicas.every((r) => r.state.cleared.get(row.name) === row.updatedAt)) {
        await this.#o.store.forget(row.server, row.name, row.updatedAt);
        for (const r of d.replicas) r.state.cleared.delete(row.name);
      }
    }
  }

  /**
   * Makes `a` desired, then applies it to the server's replicas one by one (the rollout of a new version);
   * returns each replica's outcome and the row it replaced. The caller decides what to keep ({@link restore}).
   */
  async attach(a: Attachment): Promise<{ previous: Desired | null; replicas: ReplicaOutcome[] }> {
    const d = this.#deployment(a.server);
    const previous = await this.#o.store.attach(a);
    const replicas: ReplicaOutcome[] = [];
    for (const r of d.replicas) {
      const { outcomes, error } = await this.#pass(d, r, "attach", a.name);
      const mine = outcomes.find((o) => o.name === a.name) ??
        { name: a.name, ok: false, action: "failed" as const, version: null, error: error!, transient: true };
      replicas.push({ url: r.server.url, ...mine });
    }
    return { previous, replicas };
  }

  /** Marks `name` detached on `server` and unloads it from every replica, one by one. */
  async detach(
    server: string,
    name: string,
  ): Promise<{ previous: Desired | null; replicas: ReplicaOutcome[] }> {
    const d = this.#deployment(server);
    const previous = await this.#o.store.detach(server, name);
    const row = await this.#o.store.get(server, name) as Extract<Desired, { state: "detached" }>;
    const replicas: ReplicaOutcome[] = [];
    for (const r of d.replicas) {
      // Unload whether or not it is listed: a 404 means it was not there.
      const { outcomes } = await this.#locked(d, r, "detach", async (t) => {
        const outcome = await ensureAbsent(t, row, new Set([name]));
        return { outcomes: [outcome], error: outcome.ok ? null : outcome.error! };
      });
      replicas.push({ url: r.server.url, ...outcomes[0] });
    }
    return { previous, replicas };
  }

  /** Puts back the desired row an attach or detach replaced (when it failed everywhere for good). */
  restore(server: string, name: string, previous: Desired | null): Promise<void> {
    return this.#o.store.restore(server, name, previous);
  }

  /** Every configured server's desired rows and replicas. */
  report(): Promise<ServerState[]> {
    return Promise.all([...this.#deployments.values()].map(async (d) => ({
      name: d.config.name,
      desired: await this.#o.store.list(d.config.name),
      replicas: d.replicas.map((r) => r.state.report()),
      leader: d.leadership?.leader ?? true,
    })));
  }

  /**
   * Takes the replica's lease shared with the other sidecars (alone on a store: nothing to take), waiting while
   * another holds it, for as long as `signal` lets; returns its release.
   */
  async #holdReplica(d: Deployment, r: Replica, signal: AbortSignal): Promise<() => Promise<void>> {
    const fleet = this.#o.fleet;
    if (!fleet) return () => Promise.resolve();
    // By its place in the deployment: a URL can hold credentials, which the store never keeps.
    const name = `replica:${d.config.name}:${d.replicas.indexOf(r)}`;
    while (!(await fleet.leases.acquireLease(name, fleet.holder, this.settings.passTimeoutMs + 1000))) {
      if (signal.aborted) {
        throw new Error(`replica ${r.server.url}: another sidecar held it for the whole pass`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return () => fleet.leases.releaseLease(name, fleet.holder).catch(() => {});
  }

  /** The replicas' states, for `/metrics`. */
  replicaStates(): ReplicaState[] {
    return [...this.#deployments.values()].flatMap((d) => d.replicas.map((r) => r.state));
  }
}

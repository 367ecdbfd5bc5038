/**
 * Named leases in the store, and leadership held through one: how the sidecars that share a database agree that
 * exactly one of them runs a piece of work at a time (the reconcile loop of a deployment).
 *
 * A lease is a row (name, holder, expiry) in the shared store ({@link LeaseTable}): taking it succeeds when it is
 * free, expired or already the caller's, and moves its expiry `ttlMs` past the database's clock. A
 * {@link Leadership} renews its lease three times per `ttlMs`, so a live leader never lets it lapse, and a
 * follower tries as often, so when the leader dies another takes over at most `ttlMs` plus a third of it later.
 * The holder counts itself leader only until `ttlMs` after the start of its last successful renewal (its own
 * clock, which starts before the database's expiry does): a leader cut off from the database steps down before
 * anyone else can take over, so two never lead at once.
 *
 * A row rather than PostgreSQL's advisory locks: those belong to a connection, and a pooled or reconnected
 * connection drops them without a word; a row with an expiry survives a database restart and works the same on
 * SQLite.
 *
 * @module
 */

import { hostname } from "node:os";
import { join } from "node:path";

/** Where leases live: the store every sidecar of a deployment shares. */
export interface LeaseTable {
  /**
   * Takes or renews the lease `name` for `holder` for `ttlMs` (from the database's clock) when it is free,
   * expired or already `holder`'s; true when `holder` now holds it.
   */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up, if `holder` holds it. */
  releaseLease(name: string, holder: string): Promise<void>;
}

/** Options of a {@link Leadership}. */
export interface LeadershipOptions {
  readonly table: LeaseTable;
  /** The lease's name, e.g. `reconcile:<server>`. */
  readonly name: string;
  /** This sidecar's id. */
  readonly holder: string;
  /** How long a taken lease lasts without renewal (ms). */
  readonly ttlMs: number;
  /** Called when this holder becomes leader (true) or stops being leader (false). */
  readonly onChange?: (leader: boolean) => void;
  /** Milliseconds since some fixed point, monotonic (default `performance.now`). */
  readonly now?: () => number;
}

/**
 * Leadership through a lease: {@link start} keeps trying to take or renew it; {@link leader} says whether this
 * holder may act as leader now.
 *
 * @example
 * ```ts
 * import { Leadership, type LeaseTable } from "./lease.ts";
 * const rows = new Map<string, { holder: string; until: number }>();
 * const table: LeaseTable = {
 *   acquireLease: (name, holder, ttlMs) => {
 *     const row = rows.get(name), now = Date.now();
 *     if (row && row.holder !== holder && row.until > now) return Promise.resolve(false);
 *     rows.set(name, { holder, until: now + ttlMs });
 *     return Promise.resolve(true);
 *   },
 *   releaseLease: (name, holder) => (rows.get(name)?.holder === holder && rows.delete(name), Promise.resolve()),
 * };
 * const a = new Leadership({ table, name: "reconcile:vllm", holder: "a", ttlMs: 300 });
 * const b = new Leadership({ table, name: "reconcile:vllm", holder: "b", ttlMs: 300 });
 * await a.renew();
 * await b.renew();
 * if (!a.leader || b.leader) throw new Error("a took it first");
 * await a.stop(); // released: b takes it on its next try
 * await b.renew();
 * if (!b.leader) throw new Error("b leads");
 * await b.stop();
 * ```
 */
export class Leadership {
  readonly #o: LeadershipOptions;
  readonly #now: () => number;
  readonly #stopping = new AbortController();
  /** Until when (this holder's clock) it leads; -Infinity when it does not. */
  #until = -Infinity;
  #was = false;
  #loop: Promise<void> | null = null;

  constructor(options: LeadershipOptions) {
    if (!(options.ttlMs > 0)) {
      throw new RangeError(`lease '${options.name}': ttlMs must be positive, got ${options.ttlMs}`);
    }
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Whether this holder leads now. */
  get leader(): boolean {
    const now = this.#now() < this.#until;
    this.#report(now);
    return now;
  }

  /** One attempt to take or renew the lease; a failing database counts as not holding it. */
  async renew(): Promise<boolean> {
    const started = this.#now();
    let held = false;
    try {
      held = await this.#o.table.acquireLease(this.#o.name, this.#o.holder, this.#o.ttlMs);
    } catch {
      held = false; // unreachable: lead on only while the last renewal lasts
    }
    if (held) this.#until = started + this.#o.ttlMs;
    else if (!(this.#now() < this.#until)) this.#until = -Infinity;
    return this.leader;
  }

  /**
   * Renews three times per `ttlMs` until {@link stop}; the promise settles after the first attempt, with whether
   * it leads.
   */
  start(): Promise<boolean> {
    if (this.#loop) return Promise.resolve(this.leader);
    const period = this.#o.ttlMs / 3, signal = this.#stopping.signal;
    const first = this.renew();
    this.#loop = (async () => {
      await first;
      while (!signal.aborted) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, period);
          signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
        });
        if (!signal.aborted) await this.renew();
      }
    })();
    return first;
  }

  /** Stops renewing and gives the lease up (so a follower takes over on its next try, not at expiry). */
  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#loop;
    const held = this.#now() < this.#until;
    this.#until = -Infinity;
    this.#report(false);
    if (held) await this.#o.table.releaseLease(this.#o.name, this.#o.holder).catch(() => {});
  }

  #report(leader: boolean): void {
    if (leader === this.#was) return;
    this.#was = leader;
    this.#o.onChange?.(leader);
  }
}

/**
 * This sidecar's id in a shared store: kept in `<dataDir>/sidecar-id` (the host's name and a random part, made at
 * the first start), so a restarted sidecar knows the jobs it held in its previous life and takes them back at once.
 */
export async function sidecarId(dataDir: string): Promise<string> {
  const file = join(dataDir, "sidecar-id");
  try {
    const id = (await Deno.readTextFile(file)).trim();
    if (id) return id;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const id = `${hostname()}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.writeTextFile(file, id + "\n", { mode: 0o600 });
  return id;
}

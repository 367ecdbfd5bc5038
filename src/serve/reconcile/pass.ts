/**
 * One pass over one replica: list what it has loaded, then make each desired row true there.
 *
 * - An attached row whose name is missing is loaded (after a restart: "repaired"); one whose name is listed with
 *   a version the sidecar has not verified there (the sidecar restarted) is checked with the plugin's `verify`,
 *   which compares the loaded path and the output; another version is replaced ("swapped": `load_inplace` on vLLM
 *   and the embedded server, unload + load on SGLang) under the deployment's rollout lock, so replicas swap one at
 *   a time.
 * - Every load ends with the plugin's verify-after-load probe; an adapter that does not change the output fails
 *   too. A failed swap loads the previous version again, a failed first load is unloaded: the replica keeps what
 *   it served.
 * - A detached row's name is unloaded wherever it is still listed.
 *
 * @module
 */

import { attaching } from "../../../plugins/errors.ts";
import { ServerError } from "../../../plugins/http.ts";
import {
  type AdapterRef,
  AttachError,
  type AttachResult,
  type CallContext,
  type ServerConfig,
  type ServerPlugin,
  UnsupportedError,
} from "../../../plugins/types.ts";
import type { Attachment, Desired } from "../store/mod.ts";
import type { Mutex } from "./lock.ts";
import type { Known, Outcome, ReplicaState } from "./replica.ts";

/** What a pass works with. */
export interface Target {
  readonly plugin: ServerPlugin;
  /** The replica (its own URL). */
  readonly server: ServerConfig;
  readonly call: CallContext;
  readonly state: ReplicaState;
  /** The deployment's rollout lock: one swap at a time across its replicas. */
  readonly rollout: Mutex;
  readonly now: () => number;
  /** Makes the adapter's folder exist here before a load (a shared store writes it from its copy). */
  readonly ensureAdapter?: (ref: AdapterRef) => Promise<void>;
}

/**
 * Whether a later attempt may succeed: no answer, a 5xx, a timeout or abort. A 4xx, a capability the server lacks,
 * a bad adapter folder or a failed verification is not.
 *
 * @example
 * ```ts
 * import { isTransient } from "./pass.ts";
 * import { ServerError } from "../../../plugins/http.ts";
 * import { AttachError } from "../../../plugins/types.ts";
 * const refused = new ServerError("refused", { serverMessage: "refused", attempts: 1 });
 * if (!isTransient(new AttachError("x", { cause: refused }))) throw new Error("no answer: retry");
 * if (isTransient(new AttachError("x", { status: 400 }))) throw new Error("a 400 stays a 400");
 * ```
 */
export function isTransient(e: unknown): boolean {
  if (e instanceof UnsupportedError) return false;
  if (e instanceof AttachError) {
    return e.status !== undefined ? e.status >= 500 : e.cause instanceof ServerError;
  }
  if (e instanceof ServerError) return e.status === undefined || e.status >= 500;
  return true;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

function refOf(a: Pick<Attachment, "name" | "path" | "rank" | "version">): AdapterRef {
  return { name: a.name, path: a.path, rank: a.rank, version: a.version };
}

/** Attach, and fail unless the verification holds (listed, and output that differs where the server generates). */
async function attachVerified(t: Target, ref: AdapterRef): Promise<AttachResult> {
  await t.ensureAdapter?.(ref);
  const result = await t.plugin.attach(t.server, ref, t.call);
  if (result.verification.changesOutput === false) {
    throw new AttachError(
      `${attaching(t.server, ref.name)}: verification failed: ${result.verification.detail}`,
    );
  }
  return result;
}

/** After a failed load: the previous version back (a swap), or the failed one off (a first load). */
async function rollBack(
  t: Target,
  name: string,
  previous: Known | undefined,
  wasListed: boolean,
): Promise<string> {
  if (previous) {
    try {
      await attachVerified(t, refOf({ name, ...previous }));
      t.state.known.set(name, { ...previous, verifiedAt: t.now() });
      return `; kept version ${previous.version}`;
    } catch (e) {
      t.state.known.delete(name);
      return `; loading version ${previous.version} again failed too: ${message(e)}`;
    }
  }
  if (!wasListed) await t.plugin.detach(t.server, name, t.call).catch(() => {});
  return "";
}

/** Makes `row` true on the replica; `force`: an explicit attach (verify even an unchanged version, retry refusals). */
async function ensure(
  t: Target,
  row: Attachment,
  listed: ReadonlySet<string>,
  lost: boolean,
  force: boolean,
): Promise<Outcome> {
  const { name } = row, { state } = t;
  const rejected = state.rejected.get(name);
  let known = state.known.get(name);
  if (force) state.rejected.delete(name);
  else if (rejected?.version === row.version) {
    return { name, ok: false, action: "skipped", version: known?.version ?? null, error: rejected.error };
  }
  if (listed.has(name) && known?.version === row.version && !force) {
    return { name, ok: true, action: "unchanged", version: row.version };
  }
  const started = t.now();
  if (listed.has(name) && (known === undefined || known.version === row.version)) {
    // Loaded, but not verified by this sidecar (it restarted) or re-checked on request: verify in place.
    const v = await t.plugin.verify(t.server, refOf(row), t.call).catch(() => null);
    if (v?.listed && v.changesOutput !== false) {
      state.verified(row, t.now());
      return {
        name,
        ok: true,
        action: "unchanged",
        version: row.version,
        verification: v,
        millis: t.now() - started,
      };
    }
    if (known?.version === row.version) known = undefined; // it failed its check: nothing to go back to
  }
  const swap = listed.has(name);
  const attempt = async (): Promise<Outcome> => {
    try {
      const result = await attachVerified(t, refOf(row));
      state.verified(row, t.now());
      const action = swap ? "swapped" : lost ? "repaired" : "attached";
      const { verification, attempts } = result;
      return {
        name,
        ok: true,
        action,
        version: row.version,
        verification,
        attempts,
        millis: t.now() - started,
      };
    } catch (e) {
      const transient = isTransient(e);
      const kept = await rollBack(t, name, known, swap);
      const error = message(e) + kept;
      if (transient) state.errors.set(name, error);
      else state.rejected.set(name, { version: row.version, error });
      const version = state.known.get(name)?.version ?? null;
      const unsupported = e instanceof UnsupportedError;
      return {
        name,
        ok: false,
        action: "failed",
        version,
        error,
        transient,
        unsupported,
        millis: t.now() - started,
      };
    }
  };
  return swap ? await t.rollout.run(attempt) : await attempt();
}

/** Takes a detached name off the replica (`listed`: names it has; a 404 on unload means it had not). */
export async function ensureAbsent(
  t: Target,
  row: Extract<Desired, { state: "detached" }>,
  listed: ReadonlySet<string>,
): Promise<Outcome> {
  const { name } = row;
  t.state.known.delete(name);
  t.state.rejected.delete(name);
  t.state.errors.delete(name);
  let action: "detached" | "absent" = "absent";
  if (listed.has(name)) {
    try {
      await t.plugin.detach(t.server, name, t.call);
      action = "detached";
    } catch (e) {
      if (!(e instanceof AttachError && e.status === 404)) {
        const unsupported = e instanceof UnsupportedError;
        return {
          name,
          ok: false,
          action: "failed",
          version: null,
          error: message(e),
          transient: isTransient(e),
          unsupported,
        };
      }
    }
  }
  t.state.cleared.set(name, row.updatedAt);
  return { name, ok: true, action, version: null };
}

/** The pass: `rows` are the deployment's desired rows; `force` names an explicit attach. */
export async function reconcileReplica(
  t: Target,
  rows: readonly Desired[],
  force?: string,
): Promise<{ outcomes: Outcome[]; error: string | null }> {
  let listed: Set<string>;
  try {
    listed = new Set(await t.plugin.list(t.server, t.call));
  } catch (e) {
    // A server that cannot list: what this sidecar verified there is all it knows.
    if (!(e instanceof UnsupportedError)) {
      const error = message(e), transient = isTransient(e);
      const version = (name: string) => t.state.known.get(name)?.version ?? null;
      const outcomes = rows.map((row): Outcome => ({
        name: row.name,
        ok: false,
        action: "failed",
        version: version(row.name),
        error,
        transient,
      }));
      return { outcomes, error };
    }
    listed = new Set(t.state.known.keys());
  }
  const lost = new Set([...t.state.known.keys()].filter((name) => !listed.has(name)));
  for (const name of lost) t.state.known.delete(name);
  const outcomes: Outcome[] = [];
  for (const row of rows) {
    outcomes.push(
      row.state === "attached"
        ? await ensure(t, row, listed, lost.has(row.name), row.name === force)
        : await ensureAbsent(t, row, listed),
    );
  }
  const failed = outcomes.find((o) => !o.ok && o.transient);
  return { outcomes, error: failed ? failed.error! : null };
}

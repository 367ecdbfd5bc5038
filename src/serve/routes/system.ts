/**
 * `/healthz`, `/metrics` (Prometheus text, with the reconcile loop's state per replica) and `/v1/servers`
 * (configured servers, their desired attachments, and each replica's reachability and reconcile state).
 *
 * @module
 */

import { Hono } from "hono";
import type { SidecarDeps } from "../deps.ts";
import { replicasOf } from "../deployments.ts";
import { JOB_STATES } from "../store/mod.ts";

/** Prometheus text exposition of the sidecar's counters. */
export async function metricsText(deps: SidecarDeps): Promise<string> {
  const counts = await deps.store.counts();

  const lines = ["# HELP flexora_jobs Jobs by state.", "# TYPE flexora_jobs gauge"];
  for (const s of JOB_STATES) lines.push(`flexora_jobs{state="${s}"} ${counts[s] ?? 0}`);
  const running = (await deps.store.list(["searching", "retraining"]))[0]?.progress as {
    step?: number;
    elapsed?: number;
  } | null;
  const rate = running?.step && running.elapsed ? running.step / running.elapsed : 0;
  lines.push(
    "# HELP flexora_train_steps_per_second Steps per second of the running job's current stage.",
    "# TYPE flexora_train_steps_per_second gauge",
    `flexora_train_steps_per_second ${rate}`,
    "# HELP flexora_attach_seconds Time spent attaching adapters.",
    "# TYPE flexora_attach_seconds summary",
    `flexora_attach_seconds_sum ${deps.metrics.attachSeconds}`,
    `flexora_attach_seconds_count ${deps.metrics.attachCount}`,
    "# HELP flexora_errors_total Requests answered with an error.",
    "# TYPE flexora_errors_total counter",
    `flexora_errors_total ${deps.metrics.errors}`,
    ...await reconcileMetrics(deps),
  );
  return lines.join("\n") + "\n";
}

/** A Prometheus label value. */
const label = (v: string) => `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;

/** The reconcile loop's gauges and counters, per replica. */
async function reconcileMetrics(deps: SidecarDeps): Promise<string[]> {
  const states = deps.reconciler.replicaStates();
  const at = (s: { server: string; url: string }) => `server=${label(s.server)},replica=${label(s.url)}`;
  const gauge = (name: string, help: string, value: (s: typeof states[number]) => number | null) => [
    `# HELP ${name} ${help}`,
    `# TYPE ${name} gauge`,
    ...states.flatMap((s) => {
      const v = value(s);
      return v === null ? [] : [`${name}{${at(s)}} ${v}`];
    }),
  ];
  const desired = (await deps.reconciler.report()).flatMap((server) =>
    (["attached", "detached"] as const).map((state) =>
      `flexora_desired_attachments{server=${label(server.name)},state="${state}"} ${
        server.desired.filter((d) => d.state === state).length
      }`
    )
  );
  return [
    "# HELP flexora_desired_attachments Desired attachments per server (detached: waiting to be seen gone).",
    "# TYPE flexora_desired_attachments gauge",
    ...desired,
    ...gauge(
      "flexora_replica_up",
      "1 when the replica's last reconcile pass succeeded, 0 when it failed (absent before the first).",
      (s) => (s.passes === 0 ? null : s.failures === 0 ? 1 : 0),
    ),
    ...gauge(
      "flexora_replica_consecutive_failures",
      "Failed passes in a row (backoff grows with them).",
      (s) => s.failures,
    ),
    ...gauge(
      "flexora_replica_last_success_timestamp_seconds",
      "Start of the replica's last successful pass.",
      (s) => (s.lastOk === null ? null : s.lastOk / 1000),
    ),
    ...gauge(
      "flexora_replica_adapter_errors",
      "Adapters the replica should serve and does not (a failed load, or a version it refused).",
      (s) => new Set([...s.errors.keys(), ...s.rejected.keys()]).size,
    ),
    "# HELP flexora_reconcile_total Passes (passes_ok, passes_failed) and what they did per replica.",
    "# TYPE flexora_reconcile_total counter",
    ...states.flatMap((s) =>
      [...s.counts].map(([what, n]) => `flexora_reconcile_total{${at(s)},what="${what}"} ${n}`)
    ),
  ];
}

/** The system sub-app. */
export function systemApp(deps: SidecarDeps): Hono {
  const app = new Hono();
  // The sidecar's id: the `owner` of the jobs it runs, among the sidecars sharing a store.
  app.get("/healthz", (c) => c.json({ ok: true, sidecar: deps.manager.owner }));
  app.get(
    "/metrics",
    async (c) => c.text(await metricsText(deps), 200, { "content-type": "text/plain; version=0.0.4" }),
  );
  app.get("/v1/servers", async (c) => {
    const states = new Map((await deps.reconciler.report()).map((s) => [s.name, s]));
    const servers = await Promise.all(deps.config.servers.map(async (s) => {
      const plugin = deps.plugins[s.kind], state = states.get(s.name)!;
      const replicas = await Promise.all(
        replicasOf(s).map(async (r, i) => ({
          ...state.replicas[i],
          reachable: await plugin.reachable(r, { ...deps.call, retries: 0 }).catch(() => false),
        })),
      );
      return {
        name: s.name,
        kind: s.kind,
        url: s.url,
        reachable: replicas.every((r) => r.reachable),
        capabilities: plugin.capabilities(s),
        desired: state.desired,
        // Among sidecars sharing a store, whether this one runs the server's reconcile loop (docs/scale.md).
        leader: state.leader,
        replicas,
      };
    }));
    return c.json({ servers });
  });
  return app;
}

/**
 * `/healthz`, `/metrics` (Prometheus text) and `/v1/servers`.
 *
 * @module
 */

import { Hono } from "hono";
import type { SidecarDeps } from "../deps.ts";
import { JOB_STATES } from "../store.ts";

/** Prometheus text exposition of the sidecar's counters. */
export function metricsText(deps: SidecarDeps): string {
  const counts = deps.store.counts();

  const lines = ["# HELP flexora_jobs Jobs by state.", "# TYPE flexora_jobs gauge"];
  for (const s of JOB_STATES) lines.push(`flexora_jobs{state="${s}"} ${counts[s] ?? 0}`);
  const running = deps.store.list(["searching", "retraining"])[0]?.progress as {
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
  );
  return lines.join("\n") + "\n";
}

/** The system sub-app. */
export function systemApp(deps: SidecarDeps): Hono {
  const app = new Hono();
  app.get("/healthz", (c) => c.json({ ok: true }));
  app.get("/metrics", (c) => c.text(metricsText(deps), 200, { "content-type": "text/plain; version=0.0.4" }));
  app.get("/v1/servers", async (c) => {
    const servers = await Promise.all(deps.config.servers.map(async (s) => {
      const reachable = await deps.plugins[s.kind].reachable(s, { ...deps.call, retries: 0 }).catch(() =>
        false
      );
      return {
        name: s.name,
        kind: s.kind,
        url: s.url,
        reachable,
        capabilities: deps.plugins[s.kind].capabilities(s),
      };
    }));
    return c.json({ servers });
  });
  return app;
}

/**
 * The dashboard: `/` lists jobs and adapters (attach and detach buttons per configured server, a field for the
 * bearer token), `/jobs/:id` shows a job's progress, facts and chart live, updated from its server-sent events.
 * Charts come from `/v1/jobs/:id/plot.svg`, drawn by the same code as `flexora plot`. No framework: small pages
 * (`../ui/`) whose scripts call the JSON API with the token from the field.
 *
 * @module
 */

import { Hono } from "hono";
import { fromJob, renderSvg } from "../../report/svg.ts";
import type { SidecarDeps } from "../deps.ts";
import { INDEX_BODY, INDEX_SCRIPT } from "../ui/index_page.ts";
import { JOB_BODY, jobScript } from "../ui/job_page.ts";
import { page } from "../ui/page.ts";

/** The dashboard sub-app. */
export function uiApp(deps: SidecarDeps): Hono {
  const app = new Hono();
  app.get("/", (c) => c.html(page("flexora", INDEX_BODY, INDEX_SCRIPT)));
  app.get("/jobs/:id", async (c) => {
    const job = await deps.manager.get(c.req.param("id"));
    return c.html(page(`job ${job.id}`, JOB_BODY, jobScript(job.id)));
  });
  app.get("/v1/jobs/:id/plot.svg", async (c) => {
    const job = await deps.manager.get(c.req.param("id"));
    return c.body(renderSvg(fromJob(job, await deps.manager.history(job.id, 0, -1))), 200, {
      "content-type": "image/svg+xml",
    });
  });
  return app;
}

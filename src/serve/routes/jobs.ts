/**
 * `/v1/jobs`: submit, list, inspect, follow (SSE), cancel and resume training jobs.
 *
 * @module
 */

import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { streamSSE } from "hono/streaming";
import type { SidecarDeps } from "../deps.ts";
import { planFinetune, resolveOptions } from "../../flexora/mod.ts";
import { ErrorBody, Estimate, IdParam, Job, JobCreate, jsonContent } from "../schemas.ts";
import { confine, hubModel, requireRegular } from "../security.ts";
import { FINAL_STATES, type JobRecord } from "../store.ts";
import { validationHook } from "../errors.ts";

const json = jsonContent;
const errors = {
  400: json(ErrorBody, "invalid request"),
  401: json(ErrorBody, "missing or wrong token"),
  404: json(ErrorBody, "not found"),
  409: json(ErrorBody, "conflict with the job's state"),
  429: json(ErrorBody, "queue full"),
};

const create = createRoute({
  method: "post",
  path: "/",
  request: { body: { content: { "application/json": { schema: JobCreate } }, required: true } },
  responses: {
    202: json(
      z.object({
        id: z.string(),
        job: Job,
        estimate: Estimate.nullable().openapi({ description: "null for a Hub model: the job downloads it" }),
      }),
      "queued, with its estimate",
    ),
    ...errors,
  },
});
const list = createRoute({
  method: "get",
  path: "/",
  responses: { 200: json(z.object({ jobs: z.array(Job) }), "all jobs") },
});
const get = createRoute({
  method: "get",
  path: "/{id}",
  request: { params: IdParam },
  responses: { 200: json(Job, "the job"), ...errors },
});
const action = (verb: "cancel" | "resume") =>
  createRoute({
    method: "post",
    path: `/{id}/${verb}`,
    request: { params: IdParam },
    responses: { 200: json(Job, "the job"), ...errors },
  });
const events = createRoute({
  method: "get",
  path: "/{id}/events",
  request: { params: IdParam },
  responses: {
    200: { description: "server-sent events: `job` with the job record after every change" },
    ...errors,
  },
});

/** The jobs sub-app. */
export function jobsApp(deps: SidecarDeps): OpenAPIHono {
  const app = new OpenAPIHono({ defaultHook: validationHook });
  const jobJson = (j: JobRecord) => j as unknown as z.infer<typeof Job>;
  app.openapi(create, async (c) => {
    const body = c.req.valid("json");
    // A Hub id (when allowed) is downloaded by the job, never here: its checks against the model wait till then.
    const hub = await hubModel(body.model, deps.config.allowHub);
    const model = hub ?? await confine("model", body.model, deps.config.modelRoots);
    const data = await confine("data", body.data, deps.config.dataRoots);
    if (!hub) await requireRegular("model", model);
    await requireRegular("data", data);
    const options = { ...body.options, ...(body.method ? { method: body.method } : {}) };
    // The library's own checks against the model's config and the data: a job that cannot run is a 400 now,
    // not a failure in its runner.
    const estimate = hub
      ? (resolveOptions(options), null)
      : (await planFinetune(model, data, options)).estimate;
    const job = deps.manager.submit({
      model,
      data,
      name: body.name,
      options,
      padLayers: body.padLayers,
      attach: body.attach,
    });
    return c.json({ id: job.id, job: jobJson(job), estimate }, 202);
  });
  app.openapi(list, (c) => c.json({ jobs: deps.manager.list().map(jobJson) }, 200));
  app.openapi(get, (c) => c.json(jobJson(deps.manager.get(c.req.valid("param").id)), 200));
  app.openapi(action("cancel"), (c) => c.json(jobJson(deps.manager.cancel(c.req.valid("param").id)), 200));
  app.openapi(action("resume"), (c) => c.json(jobJson(deps.manager.resume(c.req.valid("param").id)), 200));
  app.openapi(events, (c) => {
    const { id } = c.req.valid("param");
    const first = deps.manager.get(id);
    return streamSSE(c, async (stream) => {
      let done: () => void = () => {};
      const finished = new Promise<void>((resolve) => (done = resolve));
      let writes = Promise.resolve();
      // Writes are chained so the final state is written before the stream ends.
      const send = (job: JobRecord) => {
        writes = writes
          .then(() => stream.writeSSE({ event: "job", data: JSON.stringify(job) }))
          .then(() => void (FINAL_STATES.includes(job.state) && done()), () => done());
      };
      const unsubscribe = deps.manager.subscribe(id, send);
      stream.onAbort(() => done());
      send(first);
      await finished;
      unsubscribe();
    });
  });
  return app;
}

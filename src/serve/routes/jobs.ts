/**
 * `/v1/jobs`: submit, list, inspect, follow (SSE), cancel and resume training jobs.
 *
 * @module
 */

import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { streamSSE } from "hono/streaming";
import type { SidecarDeps } from "../deps.ts";
import { planFinetune, resolveOptions } from "../../flexora/mod.ts";
import { resolveDevice } from "../../runtime/device.ts";
import { ErrorBody, Estimate, HistoryRow, IdParam, Job, JobCreate, jsonContent } from "../schemas.ts";
import { confine, hubModel, requireRegular } from "../security.ts";
import type { JobChange } from "../jobs.ts";
import { FINAL_STATES, type HistoryRow as Row, type JobRecord } from "../store/mod.ts";
import { validationHook } from "../errors.ts";

const json = jsonContent;
/** History points per page, and per event of a replay. */
const MAX_PAGE = 1000;
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
    200: {
      description:
        "server-sent events `job`, each `{job, points}`: the job record after a change and the history " +
        "points added since the previous event (none in the first, a snapshot, unless the request's " +
        "Last-Event-ID names the last point seen: then every point after it). Each event's id is its last point's.",
    },
    ...errors,
  },
});
const history = createRoute({
  method: "get",
  path: "/{id}/history",
  request: {
    params: IdParam,
    query: z.object({
      after: z.coerce.number().int().min(0).default(0).openapi({
        description: "a point id; 0 for the first page",
      }),
      limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(MAX_PAGE),
    }),
  },
  responses: {
    200: json(
      z.object({
        points: z.array(HistoryRow),
        next: z.number().nullable().openapi({ description: "`after` for the next page; null on the last" }),
      }),
      "a page of the job's history, oldest first",
    ),
    ...errors,
  },
});

/** The jobs sub-app. */
export function jobsApp(deps: SidecarDeps): OpenAPIHono {
  const app = new OpenAPIHono({ defaultHook: validationHook });
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
    // The job's device (default the sidecar's) is resolved here as `serve --device` is at start: an unavailable
    // one is a 400 with the install line. The record keeps the concrete choice, which a resume reuses.
    const { device } = await resolveDevice(body.device ?? deps.config.device ?? "cpu");
    const job = await deps.manager.submit({
      model,
      data,
      name: body.name,
      options,
      padLayers: body.padLayers,
      device,
      attach: body.attach,
    });
    return c.json({ id: job.id, job, estimate }, 202);
  });
  app.openapi(list, async (c) => c.json({ jobs: await deps.manager.list() }, 200));
  app.openapi(get, async (c) => c.json(await deps.manager.get(c.req.valid("param").id), 200));
  app.openapi(action("cancel"), async (c) => c.json(await deps.manager.cancel(c.req.valid("param").id), 200));
  app.openapi(action("resume"), async (c) => c.json(await deps.manager.resume(c.req.valid("param").id), 200));
  app.openapi(history, async (c) => {
    const { after, limit } = c.req.valid("query");
    const points = await deps.manager.history(c.req.valid("param").id, after, limit);
    return c.json({ points, next: points.length === limit ? points.at(-1)!.id : null }, 200);
  });
  app.openapi(events, async (c) => {
    const { id } = c.req.valid("param");
    await deps.manager.get(id); // 404 before the stream starts
    const header = c.req.header("last-event-id");
    const lastSeen = header === undefined ? NaN : Number(header);
    return streamSSE(c, async (stream) => {
      let done: () => void = () => {};
      const finished = new Promise<void>((resolve) => (done = resolve));
      let writes = Promise.resolve();
      // The id of the last point this subscriber has; later points only go out once.
      let seen = Number.isInteger(lastSeen) && lastSeen >= 0 ? lastSeen : await deps.manager.lastPoint(id);
      // Writes are chained so the final state is written before the stream ends.
      const send = (job: JobRecord, points: readonly Row[], last = true) => {
        const fresh = points.filter((p) => p.id > seen);
        seen = fresh.at(-1)?.id ?? seen;
        const event = { event: "job", id: String(seen), data: JSON.stringify({ job, points: fresh }) };
        writes = writes
          .then(() => stream.writeSSE(event))
          .then(() => void (last && FINAL_STATES.includes(job.state) && done()), () => done());
      };
      // Subscribed before the snapshot is read, so no change falls in a gap: changes made while it is read wait
      // for it, and those it already shows (older than it) are dropped.
      const early: JobChange[] = [];
      let first: JobRecord | null = null;
      const forward = (change: JobChange) =>
        send(change.job, change.points ?? (change.point ? [change.point] : []));
      const unsubscribe = deps.manager.subscribe(
        id,
        (change) => first ? forward(change) : early.push(change),
      );
      stream.onAbort(() => done());
      // The snapshot, with the points missed since Last-Event-ID, a page per event.
      const [snapshot, missed] = await Promise.all([
        deps.manager.get(id),
        deps.manager.history(id, seen, -1),
      ]);
      first = snapshot;
      for (let at = 0; at === 0 || at < missed.length; at += MAX_PAGE) {
        send(first, missed.slice(at, at + MAX_PAGE), at + MAX_PAGE >= missed.length);
      }
      for (const change of early) if (change.job.updatedAt >= snapshot.updatedAt) forward(change);
      await finished;
      unsubscribe();
    });
  });
  return app;
}

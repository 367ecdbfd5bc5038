/**
 * The dashboard: `/` lists jobs and adapters (attach and detach buttons per configured server, a field for the
 * bearer token), `/jobs/:id` shows a job's gate chart and loss curves live, redrawn on each server-sent event.
 * Charts come from `/v1/jobs/:id/plot.svg`, drawn by the same code as `flexora plot`. No framework: a small page
 * and script that call the JSON API with the token from the field.
 *
 * @module
 */

import { Hono } from "hono";
import { html, raw } from "hono/html";
import { fromJob, renderSvg } from "../../report/svg.ts";
import type { SidecarDeps } from "../deps.ts";

const STYLE =
  `body{font-family:sans-serif;margin:2em;max-width:960px}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}button{margin-right:4px}
.state-succeeded{color:#2a7}.state-failed,.state-attach_failed{color:#c33}#token{width:24em}`;

/** Shared script: the token field and an API helper that sends it. */
const COMMON_SCRIPT = `
const tokenField = document.getElementById("token");
tokenField.value = localStorage.getItem("flexora-token") || "";
tokenField.addEventListener("change", () => localStorage.setItem("flexora-token", tokenField.value));
async function api(path, init = {}) {
  const headers = { ...(init.headers || {}), authorization: "Bearer " + tokenField.value };
  if (init.body) headers["content-type"] = "application/json";
  const res = await fetch(path, { ...init, headers });
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new Error(body?.error?.message || res.statusText);
  return body;
}
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
`;

const INDEX_SCRIPT = `
async function refresh() {
  const { jobs } = await api("/v1/jobs");
  document.getElementById("jobs").innerHTML = jobs.slice().reverse().map((j) => {
    const done = ["succeeded", "failed", "attach_failed", "cancelled", "interrupted"].includes(j.state);
    const p = done ? {} : j.progress || {};
    const step = p.total ? p.step + "/" + p.total : "";
    return "<tr><td><a href='/jobs/" + esc(j.id) + "'>" + esc(j.id.slice(0, 8)) + "</a></td><td>" + esc(j.request.name) +
      "</td><td class='state-" + esc(j.state) + "'>" + esc(j.state) + "</td><td>" + esc(p.stage || "") + " " + esc(step) + "</td></tr>";
  }).join("");
  const [{ adapters }, { servers }] = await Promise.all([api("/v1/adapters"), api("/v1/servers")]);
  document.getElementById("adapters").innerHTML = adapters.map((a) =>
    "<tr><td>" + esc(a.name) + "</td><td>" + esc((a.summary.selectedLayers || []).join(", ")) + "</td><td>" +
    servers.map((s) => "<button data-verb='attach' data-adapter='" + esc(a.name) + "' data-server='" + esc(s.name) + "'>attach to " + esc(s.name) +
      "</button><button data-verb='detach' data-adapter='" + esc(a.name) + "' data-server='" + esc(s.name) + "'>detach</button>").join("") +
    "</td></tr>").join("");
}
document.addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-verb]");
  if (!b) return;
  const out = document.getElementById("message");
  try {
    const r = await api("/v1/adapters/" + b.dataset.adapter + "/" + b.dataset.verb, { method: "POST", body: JSON.stringify({ server: b.dataset.server }) });
    out.textContent = b.dataset.verb + "ed " + b.dataset.adapter + " on " + b.dataset.server + (r.verification ? ": " + r.verification.detail : "");
  } catch (err) { out.textContent = err.message; }
  refresh();
});
refresh().catch((e) => (document.getElementById("message").textContent = e.message));
setInterval(() => refresh().catch(() => {}), 3000);
`;

const JOB_SCRIPT = (id: string) => `
const id = ${JSON.stringify(id)};
async function redraw(job) {
  document.getElementById("state").textContent = job.state + (job.error ? ": " + job.error.message : "");
  document.getElementById("chart").innerHTML = await api("/v1/jobs/" + encodeURIComponent(id) + "/plot.svg");
}
const events = new EventSource("/v1/jobs/" + encodeURIComponent(id) + "/events");
events.addEventListener("job", (e) => redraw(JSON.parse(e.data)).catch(() => {}));
`;

function page(title: string, body: string, script: string) {
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <title>${title}</title>
        <style>${raw(STYLE)}</style>
      </head>
      <body><h1>${title}</h1>
    <p><label>Bearer token <input id="token" type="password" placeholder="FLEXORA_TOKEN"></label></p>
    ${raw(body)}
    <script>${raw(COMMON_SCRIPT + script)}</script></body>
    </html>
  `;
}

/** The dashboard sub-app. */
export function uiApp(deps: SidecarDeps): Hono {
  const app = new Hono();
  app.get("/", (c) =>
    c.html(page(
      "flexora",
      `<p id="message"></p><h2>Jobs</h2><table><thead><tr><th>job</th><th>adapter</th><th>state</th><th>progress</th></tr></thead>
<tbody id="jobs"></tbody></table><h2>Adapters</h2><table><thead><tr><th>name</th><th>layers</th><th>servers</th></tr></thead>
<tbody id="adapters"></tbody></table>`,
      INDEX_SCRIPT,
    )));
  app.get("/jobs/:id", (c) => {
    const job = deps.manager.get(c.req.param("id"));
    return c.html(
      page(
        `job ${job.id}`,
        `<p><a href="/">all jobs</a> · <span id="state"></span></p><div id="chart"></div>`,
        JOB_SCRIPT(job.id),
      ),
    );
  });
  app.get("/v1/jobs/:id/plot.svg", (c) => {
    const job = deps.manager.get(c.req.param("id"));
    return c.body(renderSvg(fromJob(job as unknown as Record<string, unknown>)), 200, {
      "content-type": "image/svg+xml",
    });
  });
  return app;
}

/**
 * The dashboard's shared layout: one style sheet, the bearer-token field, and the page script's helpers: `api()`
 * (a JSON call that sends the token), `watch()` (server-sent events read through `fetch`, so the token goes in a
 * header, which `EventSource` cannot send), and `esc()`.
 *
 * @module
 */

import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";

const STYLE = `
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
th{font-weight:600;color:#555}button{margin:2px 4px 2px 0}a{color:#2a6fb0}
.state{font-weight:600}.state-succeeded{color:#2a7}.state-failed,.state-attach_failed{color:#c33}
.state-starting,.state-downloading,.state-searching,.state-retraining,.state-exporting,.state-attaching{color:#d08a00}
#status{display:flex;gap:1em;align-items:center;margin:.8em 0}progress{width:16em}
#facts th{width:12em}#message{min-height:1.2em;color:#555}#token{width:24em}
.warn{color:#a60}`;

/** Helpers every page script uses (browser JavaScript). */
const COMMON_SCRIPT = `
const tokenField = document.getElementById("token");
tokenField.value = localStorage.getItem("flexora-token") || "";
tokenField.addEventListener("change", () => localStorage.setItem("flexora-token", tokenField.value));
const auth = () => ({ authorization: "Bearer " + tokenField.value });
async function api(path, init = {}) {
  const headers = { ...(init.headers || {}), ...auth() };
  if (init.body) headers["content-type"] = "application/json";
  const res = await fetch(path, { ...init, headers });
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new Error(body?.error?.message || res.status + " " + res.statusText);
  return body;
}
// Calls onEvent with each event's parsed data until the stream ends. \`seen.id\` keeps the last event id, sent
// back as Last-Event-ID when the caller reconnects with the same \`seen\`, so the server replays what was missed.
async function watch(path, onEvent, seen = {}) {
  const resume = seen.id !== undefined ? { "last-event-id": seen.id } : {};
  const res = await fetch(path, { headers: { ...auth(), ...resume, accept: "text/event-stream" } });
  if (!res.ok) throw new Error(path + ": " + res.status + " " + res.statusText);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\\r\\n/g, "\\n");
    for (let end; (end = buffer.indexOf("\\n\\n")) >= 0; buffer = buffer.slice(end + 2)) {
      const lines = buffer.slice(0, end).split("\\n");
      const id = lines.find((l) => l.startsWith("id:"));
      if (id) seen.id = id.slice(3).trim();
      const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
}
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const FINAL = ["succeeded", "failed", "attach_failed", "cancelled", "interrupted"];
// What an attach or detach answered, in one line (per replica when the server has several).
function describeAttach(r) {
  if (!r) return "";
  if (Array.isArray(r.replicas)) {
    return r.replicas.map((p) => p.url + ": " + (p.ok === false ? "failed: " + (p.error?.message || p.error || p.action)
      : (p.action || "ok") + (p.verification?.detail ? " (" + p.verification.detail + ")" : ""))).join("; ");
  }
  return r.verification?.detail || "";
}
`;

/** A dashboard page: title, token field, body and script. */
export function page(
  title: string,
  body: string,
  script: string,
): HtmlEscapedString | Promise<HtmlEscapedString> {
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>${title}</title>
        <style>${raw(STYLE)}</style>
      </head>
      <body>
        <h1>${title}</h1>
        <p><label>Bearer token <input id="token" type="password" placeholder="FLEXORA_TOKEN" autocomplete="off"></label></p>
        ${raw(body)}
        <script>${raw(COMMON_SCRIPT + script)}</script>
      </body>
    </html>
  `;
}

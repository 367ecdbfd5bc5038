/**
 * The dashboard's front page: jobs with their states and progress, and the adapters with attach and detach
 * buttons per configured server. Refreshed every few seconds.
 *
 * @module
 */

/** The page body. */
export const INDEX_BODY = `<p id="message" role="status"></p>
<h2>Jobs</h2>
<table><thead><tr><th>job</th><th>adapter</th><th>state</th><th>progress</th><th>created</th></tr></thead>
<tbody id="jobs"></tbody></table>
<h2>Adapters</h2>
<table><thead><tr><th>name</th><th>version</th><th>layers</th><th>attached to</th><th>servers</th></tr></thead>
<tbody id="adapters"></tbody></table>`;

/** The page script (browser JavaScript; the helpers of `page.ts` are in scope). */
export const INDEX_SCRIPT = `
function jobRow(j) {
  const p = FINAL.includes(j.state) ? {} : j.progress || {};
  const step = p.total ? p.step + "/" + p.total : "";
  return "<tr data-job='" + esc(j.id) + "'><td><a href='/jobs/" + esc(j.id) + "'>" + esc(j.id.slice(0, 8)) + "</a></td>" +
    "<td>" + esc(j.request.name) + "</td><td class='state state-" + esc(j.state) + "'>" + esc(j.state) + "</td>" +
    "<td>" + esc(p.stage || "") + " " + esc(step) + "</td><td>" + esc(new Date(j.createdAt).toLocaleString()) + "</td></tr>";
}
function button(verb, adapter, server, label) {
  return "<button data-verb='" + verb + "' data-adapter='" + esc(adapter) + "' data-server='" + esc(server) + "'>" +
    esc(label) + "</button>";
}
// Where the adapter is desired, and how many replicas of each server serve it.
function attachedTo(a) {
  return (a.attachments || []).map((t) => {
    const all = t.replicas || [], serving = all.filter((r) => r.version !== null).length;
    return esc(t.server) + " (" + serving + " of " + all.length + " replica" + (all.length === 1 ? "" : "s") + ")";
  }).join(", ") || "—";
}
function adapterRow(a, servers) {
  const buttons = servers.map((s) => button("attach", a.name, s.name, "attach to " + s.name) +
    button("detach", a.name, s.name, "detach from " + s.name)).join(" ");
  return "<tr data-adapter='" + esc(a.name) + "'><td>" + esc(a.name) + "</td><td>" + esc(a.version.slice(0, 8)) + "</td><td>" +
    esc((a.summary.selectedLayers || []).join(", ")) + "</td><td class='attached'>" + attachedTo(a) + "</td><td>" + (buttons || "no servers configured") + "</td></tr>";
}
async function refresh() {
  const [{ jobs }, { adapters }, { servers }] = await Promise.all([api("/v1/jobs"), api("/v1/adapters"), api("/v1/servers")]);
  document.getElementById("jobs").innerHTML = jobs.slice().reverse().map(jobRow).join("");
  document.getElementById("adapters").innerHTML = adapters.map((a) => adapterRow(a, servers)).join("");
}
document.addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-verb]");
  if (!b) return;
  const { verb, adapter, server } = b.dataset;
  const out = document.getElementById("message");
  out.textContent = verb + "ing " + adapter + " on " + server + " …";
  try {
    const r = await api("/v1/adapters/" + encodeURIComponent(adapter) + "/" + verb, { method: "POST", body: JSON.stringify({ server }) });
    const detail = describeAttach(r);
    out.textContent = verb + "ed " + adapter + " on " + server + (detail ? ": " + detail : "");
  } catch (err) {
    out.textContent = verb + " failed: " + err.message;
  }
  refresh().catch(() => {});
});
refresh().catch((e) => (document.getElementById("message").textContent = e.message));
setInterval(() => refresh().catch(() => {}), 3000);
`;

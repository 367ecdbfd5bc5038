/**
 * A job's page: state, stage progress with elapsed time and ETA, the facts of the run (model, data, method,
 * selection rule, selected layers, trainable parameters, test metrics, timings, attach status), and the chart
 * (gate bars with the selected layers highlighted, each layer's gate over the search, train and validation
 * loss curves) redrawn as the job's server-sent events bring new history points.
 *
 * @module
 */

/** The page body. */
export const JOB_BODY = `<p><a href="/">all jobs</a></p>
<div id="status"><span id="state" class="state"></span><span id="stage"></span>
<progress id="bar" max="1" value="0"></progress><span id="times"></span></div>
<p id="error" class="warn"></p>
<table id="facts"></table>
<div id="chart"></div>
<ul id="warnings" class="warn"></ul>`;

/** The page script for job `id` (browser JavaScript; the helpers of `page.ts` are in scope). */
export function jobScript(id: string): string {
  return `
const id = ${JSON.stringify(id)};
const seconds = (s) => (s >= 90 ? (s / 60).toFixed(1) + " min" : s.toFixed(1) + " s");
function facts(job) {
  const q = job.request, o = q.options || {}, r = job.result || {};
  const method = q.method || o.method || "flexora";
  const rows = [["adapter", q.name], ["model", q.model], ["data", q.data], ["method", method]];
  if (method === "flexora") rows.push(["selection rule", o.select || "positive"]);
  if (r.selectedLayers) rows.push(["selected layers", r.selectedLayers.join(", ")]);
  if (r.trainableParams) rows.push(["trainable parameters", r.trainableParams.toLocaleString()]);
  if (r.test) {
    const t = r.test, parts = [];
    if (t.accuracy !== undefined) parts.push("accuracy " + t.accuracy.toFixed(3));
    if (t.loss !== undefined) parts.push("loss " + t.loss.toFixed(4));
    if (t.n) parts.push(t.n + " rows");
    rows.push(["test", parts.join(", ")]);
  }
  if (r.peakRssBytes) rows.push(["peak memory", (r.peakRssBytes / 1048576).toFixed(0) + " MiB (resident)"]);
  if (r.timings) rows.push(["timings", Object.entries(r.timings).map(([k, v]) => k + " " + seconds(v)).join(", ")]);
  if (r.adapterPath) rows.push(["adapter folder", r.adapterPath]);
  if (q.attach) rows.push(["attach", q.attach.server + ": " + (r.attach ? describeAttach(r.attach) || "attached" : job.state === "attach_failed" ? "failed" : "pending")]);
  return rows.map(([k, v]) => "<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>").join("");
}
function status(job) {
  const state = document.getElementById("state");
  state.textContent = job.state;
  state.className = "state state-" + job.state;
  const p = job.progress || {}, done = FINAL.includes(job.state);
  document.getElementById("stage").textContent = done ? "" : (p.stage || "") + (p.total ? " step " + p.step + " of " + p.total : "");
  const bar = document.getElementById("bar");
  bar.hidden = done || !p.total;
  if (p.total) bar.value = p.step / p.total;
  document.getElementById("times").textContent = done || p.elapsed === undefined ? "" :
    seconds(p.elapsed) + " elapsed" + (p.eta ? ", about " + seconds(p.eta) + " left" : "");
  document.getElementById("error").textContent = job.error ? job.error.code + ": " + job.error.message : "";
  document.getElementById("facts").innerHTML = facts(job);
  document.getElementById("warnings").innerHTML = ((job.result || {}).warnings || []).map((w) => "<li>" + esc(w) + "</li>").join("");
}
// The chart is drawn by the server (the same code as \`flexora plot\`); at most one request is in flight, and
// events that arrive meanwhile are folded into one more redraw.
let drawing = null, again = false;
async function redraw() {
  if (drawing) return void (again = true);
  drawing = (async () => {
    do {
      again = false;
      document.getElementById("chart").innerHTML = await api("/v1/jobs/" + encodeURIComponent(id) + "/plot.svg");
    } while (again);
  })().catch((e) => (document.getElementById("error").textContent = e.message)).finally(() => (drawing = null));
}
// Each event is the job and the history points added since the last one; the chart is redrawn when points
// arrived or the state changed. A broken stream is picked up where it stopped (Last-Event-ID).
async function follow() {
  let last = null;
  const seen = {};
  for (;;) {
    await watch("/v1/jobs/" + encodeURIComponent(id) + "/events", ({ job, points }) => {
      const changed = !last || last.state !== job.state;
      last = job;
      status(job);
      if (changed || points.length) redraw();
    }, seen).catch((e) => (document.getElementById("error").textContent = e.message));
    if (last && FINAL.includes(last.state)) return;
    await new Promise((r) => setTimeout(r, 2000)); // the stream broke off: reconnect
  }
}
follow();
`;
}

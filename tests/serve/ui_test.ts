import assert from "node:assert/strict";
import { testSidecar, TOKEN, waitFor } from "./helpers.ts";

Deno.test("the dashboard pages load, and a job's chart is served as SVG", async () => {
  const s = await testSidecar({ host: "0.0.0.0" });
  try {
    const { id } = await (await s.request("/v1/jobs", { method: "POST", body: s.body() })).json();
    await waitFor(s.request, id);
    const index = await s.app.request("/"); // the page itself needs no token, even off loopback
    assert.equal(index.status, 200);
    const html = await index.text();
    assert.match(html, /<h2>Jobs<\/h2>/);
    assert.match(html, /id="token"/);
    const job = await s.app.request(`/jobs/${id}`);
    assert.equal(job.status, 200);
    // The page follows the job's events with the token in a header (EventSource cannot send one).
    const jobHtml = await job.text();
    assert.match(jobHtml, /watch\("\/v1\/jobs\/" \+ encodeURIComponent\(id\) \+ "\/events"/);
    assert.doesNotMatch(jobHtml, /EventSource/);
    // The data behind the pages does need the token off loopback.
    assert.equal((await s.app.request(`/v1/jobs/${id}/plot.svg`)).status, 401);
    const svg = await s.app.request(`/v1/jobs/${id}/plot.svg`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(svg.headers.get("content-type"), "image/svg+xml");
    const text = await svg.text();
    assert.match(text, /^<svg/);
    assert.match(text, /class="gate selected" data-layer="0"/);
    const missing = await s.app.request("/jobs/nope");
    assert.equal(missing.status, 404);
    assert.match((await missing.json()).error.message, /no job 'nope'/);
  } finally {
    await s.close();
  }
});

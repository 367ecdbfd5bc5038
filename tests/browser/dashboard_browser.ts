/// <reference lib="dom" />
/**
 * The dashboard in a real browser (run by `dashboard_test.ts` in a child process; see there why): a sidecar and the embedded inference server serving stories260K on 127.0.0.1,
 * a Flexora job on story-object started through the API, watched on its page as the search runs, and its adapter
 * attached and detached with the front page's buttons. Screenshots of both pages go to `artifacts/`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { PLUGINS } from "../../plugins/mod.ts";
import { loadModel } from "../../src/model/model.ts";
import { createSidecar } from "../../src/serve/app.ts";
import { createEmbeddedApp } from "../../src/serve/embedded/app.ts";
import { DATA, STORIES } from "../model/shared.ts";
import { artifact, launch } from "./browser.ts";

const TOKEN = "browser-token";
const LAYERS = 5; // stories260K

/** What the job page's chart showed each time it was redrawn. */
interface Snapshot {
  readonly state: string;
  readonly bars: number;
  readonly selected: number;
  readonly heights: string;
}

/** Records a snapshot on every redraw of `#chart` (installed before the page's own script runs). */
function recordRedraws(): void {
  const w = globalThis as unknown as { snapshots: Snapshot[] };
  w.snapshots = [];
  document.addEventListener("DOMContentLoaded", () => {
    new MutationObserver(() => {
      const bars = [...document.querySelectorAll("#chart rect.gate")];
      w.snapshots.push({
        state: document.getElementById("state")!.textContent ?? "",
        bars: bars.length,
        selected: bars.filter((b) => b.classList.contains("selected")).length,
        heights: bars.map((b) => b.getAttribute("height")).join(","),
      });
    }).observe(document.getElementById("chart")!, { childList: true });
  });
}

const text = (page: Page, selector: string) => page.locator(selector).innerText();
const ROW = `tr[data-adapter="story-object"]`;

/** Clicks the front page's `verb` button for story-object on the embedded server; returns the message it left. */
async function press(index: Page, verb: "attach" | "detach", timeout: number): Promise<string> {
  await index.click(`${ROW} button[data-verb="${verb}"][data-server="embedded"]`, { timeout: 10_000 });
  await index.waitForFunction(
    (v) => new RegExp(`^(${v}ed|${v} failed)`).test(document.getElementById("message")!.textContent ?? ""),
    verb,
    { timeout },
  );
  return await text(index, "#message");
}

/** Waits until story-object's "attached to" cell (refreshed every 3 s) reads `expected`. */
async function attachedCell(index: Page, expected: string): Promise<void> {
  await index.waitForFunction(
    ([row, e]) => document.querySelector(`${row} td.attached`)?.textContent === e,
    [ROW, expected],
    { timeout: 15_000 },
  );
}

Deno.test({
  name: "the dashboard shows a job's gates rising and falling during the search, and attaches its adapter",
  // playwright-core keeps its own pipes and timers to the browser process between calls.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "flexora-browser-" });
    const model = await loadModel(STORIES);
    const embedded = createEmbeddedApp({ model, allowedAdapterRoots: [join(dataDir, "adapters")] });
    const embeddedHttp = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, embedded.app.fetch);
    const embeddedUrl = `http://127.0.0.1:${embeddedHttp.addr.port}`;
    const sidecar = await createSidecar({
      dataDir,
      token: TOKEN,
      host: "127.0.0.1",
      modelRoots: [STORIES],
      dataRoots: [DATA],
      servers: [{ name: "embedded", kind: "embedded", url: embeddedUrl, baseModel: model.dir }],
    }, PLUGINS);
    const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, sidecar.app.fetch);
    const base = `http://127.0.0.1:${http.addr.port}`;
    const browser = await launch();
    try {
      const index = await browser.newPage({ viewport: { width: 1100, height: 800 } });
      await index.goto(base + "/");
      await index.fill("#token", TOKEN);
      await index.locator("#token").dispatchEvent("change");

      const created = await fetch(base + "/v1/jobs", {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({
          model: STORIES,
          data: join(DATA, "story-object"),
          name: "story-object", // the paper's default settings
        }),
      });
      assert.equal(created.status, 202, await created.clone().text());
      const { id } = await created.json();

      // The job page, opened while the runner is still starting: its chart gains bars as the search runs.
      const job = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      await job.addInitScript(recordRedraws);
      await job.goto(`${base}/jobs/${id}`);
      // Half way through the search: a picture of the live page.
      await job.waitForFunction(
        () => {
          const p = (document.getElementById("bar") as HTMLProgressElement | null)?.value ?? 0;
          return document.getElementById("state")!.textContent === "searching" && p >= 0.5;
        },
        null,
        { timeout: 300_000, polling: 250 },
      );
      await job.screenshot({ path: await artifact("dashboard-job-searching.png"), fullPage: true });
      // Any final state ends the wait, so a failed job fails the test with its error instead of a time-out.
      await job.waitForFunction(
        () =>
          ["succeeded", "failed", "attach_failed", "cancelled"].includes(
            document.getElementById("state")!.textContent ?? "",
          ),
        null,
        { timeout: 300_000, polling: 250 },
      );
      const final = await job.evaluate(() => ({
        state: document.getElementById("state")!.textContent,
        error: document.getElementById("error")!.textContent,
      }));
      assert.equal(final.state, "succeeded", `the job ended ${final.state}: ${final.error}`);
      const snapshots = await job.evaluate(() =>
        (globalThis as unknown as { snapshots: Snapshot[] }).snapshots
      );
      assert.ok(snapshots.length > 0, "the chart was never drawn");
      assert.equal(
        snapshots[0].bars,
        0,
        `the first chart had bars before the search began: ${snapshots[0].state}`,
      );
      const searching = snapshots.filter((s) => s.state === "searching" && s.bars === LAYERS);
      assert.ok(searching.length >= 2, `the search was drawn ${searching.length} times`);
      assert.ok(
        new Set(searching.map((s) => s.heights)).size >= 2,
        "the gate bars never moved during the search",
      );
      // While the search runs, the layers the rule would keep so far are highlighted.
      assert.ok(searching.some((s) => s.selected > 0), "no layer was highlighted during the search");

      // The finished job: its selection highlighted under the rule, the facts filled in, and a validation curve
      // for the retraining.
      const record = await (await fetch(`${base}/v1/jobs/${id}`)).json();
      const selected: number[] = record.result.selectedLayers;
      assert.ok(selected.length > 0);
      assert.equal(await job.locator("#chart rect.gate").count(), LAYERS);
      assert.equal(await job.locator("#chart rect.gate.selected").count(), selected.length);
      for (const l of selected) {
        assert.equal(await job.locator(`#chart rect.gate.selected[data-layer="${l}"]`).count(), 1);
      }
      assert.match(
        await job.locator("#chart svg").innerHTML(),
        new RegExp(`selection: positive, layers ${selected.join(", ")}`),
      );
      const facts = await text(job, "#facts");
      assert.match(facts, new RegExp(`selected layers\\s+${selected.join(", ")}`));
      assert.match(facts, /timings\s+search [\d.]+ (s|min), retrain [\d.]+ (s|min), export [\d.]+ s/);
      assert.match(facts, /test\s+accuracy \d\.\d{3}, loss \d+\.\d{4}, 500 rows/);
      assert.ok(await job.locator("#bar").isHidden(), "the progress bar is still shown after the job ended");
      // gate curves per layer + search train/validation + retraining train/validation
      assert.equal(await job.locator("#chart polyline.curve").count(), LAYERS + 2 + 2);
      // Only the retraining's validation curve (one point per epoch) is sparse enough to get a dot per point.
      const evaluated = (record.result.epochs as { validation?: unknown }[]).filter((e) =>
        e.validation
      ).length;
      assert.ok(evaluated > 0);
      assert.equal(await job.locator("#chart circle.point").count(), evaluated);
      await job.screenshot({ path: await artifact("dashboard-job.png"), fullPage: true });

      // The front page lists the job and the adapter; its button attaches the adapter to the embedded server.
      await index.reload();
      await index.waitForSelector(`tr[data-job="${id}"] td.state-succeeded`, { timeout: 10_000 });
      assert.match(await press(index, "attach", 60_000), /^attached story-object on embedded/);
      const models = async () =>
        ((await (await fetch(embeddedUrl + "/v1/models")).json()).data as { id: string }[]).map((m) => m.id);
      assert.ok((await models()).includes("story-object"), `embedded server lists ${await models()}`);
      // The adapter's row says where it is desired and how many replicas serve it.
      await attachedCell(index, "embedded (1 of 1 replica)");
      await index.screenshot({ path: await artifact("dashboard-index.png"), fullPage: true });

      assert.match(await press(index, "detach", 30_000), /^detached story-object on embedded/);
      assert.ok(!(await models()).includes("story-object"));
      await attachedCell(index, "—");
    } finally {
      await browser.close();
      await http.shutdown();
      await sidecar.close();
      await embeddedHttp.shutdown();
      await embedded.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

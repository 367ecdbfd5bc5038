/**
 * Flexora's signature picture as a standalone SVG: the final gate of each layer as a bar (selected layers
 * highlighted, the selection rule and the gate = 1 line shown), each layer's gate over the search steps, and the
 * training and validation loss curves.
 *
 * @module
 */

import type { FlexoraJson } from "../flexora/flexora_json.ts";
import { defaultOptions } from "../flexora/options.ts";
import type { HistoryPoint } from "../flexora/progress.ts";
import { formatSelection, parseSelection, selectLayers } from "../flexora/select.ts";

/** What a chart is drawn from (an adapter's `flexora.json`, or a sidecar job's record). */
export interface RunRecord {
  readonly title: string;
  /** Final gate values per layer (N·softmax(logits)). */
  readonly gates: readonly number[];
  readonly selected: readonly number[];
  readonly rule?: string;
  /** While a search runs: the step the gates are from (the chart then says so instead of "final"). */
  readonly gatesAt?: number;
  /** Gate values per layer after each search step. */
  readonly gateHistory: readonly (readonly number[])[];
  /** Loss panels (one per stage, each on its own step axis): panel title → curve name → points (step, loss). */
  readonly losses: Readonly<Record<string, Readonly<Record<string, readonly (readonly [number, number])[]>>>>;
}

const W = 720, PANEL_H = 220, PAD = 48, MAX_DOTS = 30;
const COLORS = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
];

const esc = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));

/** A linear map from [lo, hi] to [a, b]. */
function scale(lo: number, hi: number, a: number, b: number): (v: number) => number {
  const span = hi - lo || 1;
  return (v) => a + ((v - lo) / span) * (b - a);
}

function axes(x0: number, y0: number, w: number, h: number, yLo: number, yHi: number, label: string): string {
  const y = scale(yLo, yHi, y0 + h, y0);
  const ticks = [yLo, (yLo + yHi) / 2, yHi].map((v) =>
    `<line x1="${x0 - 4}" x2="${x0}" y1="${y(v)}" y2="${y(v)}" stroke="#555"/>` +
    `<text x="${x0 - 6}" y="${y(v) + 4}" text-anchor="end" font-size="10">${fmt(v)}</text>`
  ).join("");
  return `<g class="axes"><line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y0 + h}" stroke="#555"/>` +
    `<line x1="${x0}" y1="${y0 + h}" x2="${x0 + w}" y2="${y0 + h}" stroke="#555"/>${ticks}` +
    `<text x="${x0}" y="${y0 - 8}" font-size="12" font-weight="bold">${esc(label)}</text></g>`;
}

function polyline(points: readonly (readonly [number, number])[], color: string, cls: string): string {
  const d = points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  return `<polyline class="${cls}" points="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`;
}

/** The gate bars panel. */
function gateBars(r: RunRecord, y0: number): string {
  const n = r.gates.length, x0 = PAD, w = W - 2 * PAD, h = PANEL_H - 40;
  const hi = Math.max(1.2, ...r.gates) * 1.05;
  const y = scale(0, hi, y0 + h, y0), slot = w / n;
  const bars = r.gates.map((g, l) => {
    const sel = r.selected.includes(l);
    const x = x0 + l * slot + slot * 0.15, bw = slot * 0.7;
    return `<rect class="gate${sel ? " selected" : ""}" data-layer="${l}" x="${x.toFixed(1)}" y="${
      y(g).toFixed(1)
    }" ` +
      `width="${bw.toFixed(1)}" height="${(y(0) - y(g)).toFixed(1)}" fill="${sel ? "#e15759" : "#bab0ac"}">` +
      `<title>layer ${l}: gate ${g.toFixed(3)}${sel ? " (selected)" : ""}</title></rect>` +
      `<text x="${(x + bw / 2).toFixed(1)}" y="${
        y0 + h + 14
      }" text-anchor="middle" font-size="10">${l}</text>`;
  }).join("");
  const one = `<line class="unit" x1="${x0}" x2="${x0 + w}" y1="${y(1)}" y2="${
    y(1)
  }" stroke="#333" stroke-dasharray="4 3"/>`;
  const rule = r.rule ? ` — selection: ${r.rule}, layers ${r.selected.join(", ") || "none"}` : "";
  const what = r.gatesAt === undefined ? "final gate per layer" : `gate per layer at step ${r.gatesAt}`;
  return axes(x0, y0, w, h, 0, hi, `${what}${rule}`) + bars + one;
}

/** A panel of curves over steps. */
function curves(
  label: string,
  xLabel: string,
  drawn: readonly { name: string; points: readonly (readonly [number, number])[] }[],
  y0: number,
): string {
  // A point that is not finite (a float16 step whose update was dropped) is left out, not drawn at NaN.
  const series = drawn.map((s) => ({ ...s, points: s.points.filter((p) => p.every(Number.isFinite)) }));
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return "";
  const x0 = PAD, w = W - 2 * PAD - 110, h = PANEL_H - 40;
  const [xs, ys] = [all.map((p) => p[0]), all.map((p) => p[1])];
  const x = scale(Math.min(...xs), Math.max(...xs), x0, x0 + w),
    y = scale(Math.min(...ys), Math.max(...ys), y0 + h, y0);
  const lines = series.map((s, i) => {
    const color = COLORS[i % COLORS.length];
    const points = s.points.map(([a, b]) => [x(a), y(b)] as const);
    // Sparse series (one point per epoch) also get a dot per point, so a single point is visible.
    const dots = points.length > MAX_DOTS
      ? ""
      : points.map(([a, b]) =>
        `<circle class="point" cx="${a.toFixed(1)}" cy="${b.toFixed(1)}" r="3" fill="${color}"/>`
      ).join("");
    return polyline(points, color, "curve") + dots +
      `<text x="${x0 + w + 10}" y="${y0 + 12 + i * 14}" font-size="11" fill="${color}">${esc(s.name)}</text>`;
  }).join("");
  const xTicks = [Math.min(...xs), Math.max(...xs)].map((v, i) =>
    `<text x="${x(v).toFixed(1)}" y="${y0 + h + 14}" text-anchor="${i ? "end" : "start"}" font-size="10">${
      i ? `${v} ${xLabel}` : v
    }</text>`
  ).join("");
  return axes(x0, y0, w, h, Math.min(...ys), Math.max(...ys), label) + xTicks + lines;
}

/** The whole picture. */
export function renderSvg(r: RunRecord): string {
  const panels: string[] = [gateBars(r, 60)];
  const gateSeries = r.gates.map((_, l) => ({
    name: `layer ${l}`,
    points: r.gateHistory.map((g, step) => [step + 1, g[l]] as const),
  }));
  if (r.gateHistory.length) {
    panels.push(curves("gate per layer during the search", "steps", gateSeries, 60 + PANEL_H));
  }
  for (const [title, group] of Object.entries(r.losses)) {
    const series = Object.entries(group).filter(([, p]) => p.length).map(([name, points]) => ({
      name,
      points,
    }));
    const unit = title.endsWith("epoch") ? "epochs" : "steps";
    if (series.length) panels.push(curves(title, unit, series, 60 + PANEL_H * panels.length));
  }
  const height = 60 + PANEL_H * panels.length;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" ` +
    `font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>` +
    `<text x="${PAD}" y="28" font-size="16" font-weight="bold">${esc(r.title)}</text>${
      panels.join("")
    }</svg>\n`;
}

/**
 * The retraining's two losses measure different tokens: training also predicts the EOS appended after each
 * answer, while the epoch's evaluation scores the answer alone (as accuracy does), so the curves say which.
 */
const RETRAIN_TRAIN = "train (answer + EOS)", RETRAIN_VALIDATION = "validation (answer)";

/** A record from an adapter's `flexora.json` (as `readFlexoraJson` reads it). */
export function fromReport(report: FlexoraJson, title: string): RunRecord {
  const history = report.metrics.search?.history ?? [];
  const epochs = report.metrics.retrain?.epochs ?? [];
  return {
    title,
    gates: report.gates?.values ?? [],
    selected: report.selectedLayers,
    rule: report.selectionRule,
    gateHistory: history.map((h) => h.gates),
    losses: {
      "search loss per step": {
        train: history.map((h) => [h.step, h.trainLoss] as const),
        validation: history.map((h) => [h.step, h.valLoss] as const),
      },
      "retraining loss per epoch": {
        [RETRAIN_TRAIN]: epochs.map((e) => [e.epoch, e.trainLoss] as const),
        [RETRAIN_VALIDATION]: epochs.flatMap((
          e,
        ) => (e.validation ? [[e.epoch, e.validation.loss] as const] : [])),
      },
    },
  };
}

/**
 * The layers a job selected, or while its search runs, the layers its rule would select from the latest gate
 * logits (marked "so far" in the rule's label).
 */
function jobSelection(
  job: JobLike,
  result: Readonly<Record<string, unknown>>,
  logits: readonly number[] | undefined,
): { selected: number[]; rule?: string } {
  const options = (job.request?.options ?? {}) as {
    select?: string;
    method?: string;
  };
  if ((options.method ?? "flexora") !== "flexora") {
    return { selected: (result.selectedLayers as number[] | undefined) ?? [] };
  }
  const rule = options.select ?? formatSelection(defaultOptions().select);
  if (result.selectedLayers) return { selected: result.selectedLayers as number[], rule };
  if (!logits?.length) return { selected: [], rule };
  try {
    return { selected: selectLayers(logits, parseSelection(rule)).layers, rule: `${rule} (so far)` };
  } catch {
    return { selected: [], rule }; // logits not finite yet, or a rule this version does not read
  }
}

/** What {@link fromJob} reads of a sidecar job (`GET /v1/jobs/:id`, a `JobRecord`). */
export interface JobLike {
  readonly id: string;
  readonly state: string;
  readonly request?: Readonly<Record<string, unknown>>;
  readonly result?: Readonly<Record<string, unknown>> | null;
}

/** A record from a sidecar job (`GET /v1/jobs/:id`) and its history (`GET /v1/jobs/:id/history`). */
export function fromJob(job: JobLike, history: readonly HistoryPoint[]): RunRecord {
  const result = job.result ?? {};
  const search = history.filter((h) => h.stage === "search");
  const retrain = history.filter((h) => h.stage === "retrain" && h.loss !== undefined);
  const evaluations = history.filter((h) => h.stage === "evaluate" && h.valLoss !== undefined);
  const last = search.at(-1)?.gates ?? (result.gates as { values?: number[] } | null)?.values ?? [];
  return {
    title: `job ${job.id} (${job.state})`,
    gates: last,
    ...jobSelection(job, result, search.at(-1)?.logits),
    gatesAt: result.selectedLayers || !search.length ? undefined : search.at(-1)!.step,
    gateHistory: search.flatMap((h) => (h.gates ? [h.gates] : [])),
    losses: {
      "search loss per step": {
        train: search.flatMap((h) => (h.loss !== undefined ? [[h.step, h.loss] as const] : [])),
        validation: search.flatMap((h) => (h.valLoss !== undefined ? [[h.step, h.valLoss] as const] : [])),
      },
      "retraining loss per step": {
        [RETRAIN_TRAIN]: retrain.map((h) => [h.step, h.loss!] as const),
        [RETRAIN_VALIDATION]: evaluations.map((h) => [h.step, h.valLoss!] as const),
      },
    },
  };
}

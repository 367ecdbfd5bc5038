/**
 * The study's outputs from its finished cells: per task, regime and method the mean and 95 % t-interval over
 * seeds of test accuracy and loss, the trainable parameters and the seconds of search and retraining; a
 * Markdown table, the issue's targets checked against it, and an SVG of accuracy against training rows.
 *
 * @module
 */

import { type Interval, tInterval } from "../stats.ts";
import { defaultEpochs, keyOptions, type Method, METHODS, type Regime, regimeLabel } from "./grid.ts";
import type { FinetuneOptions } from "../../src/flexora/options.ts";
import type { CellRecord } from "./store.ts";

/** One task, regime and method over its seeds. */
export interface Summary {
  readonly task: string;
  readonly regime: Regime;
  readonly method: Method;
  /** The options the cells ran under (JSON text; flexora's appended for the methods that use them). */
  readonly options: string;
  readonly seeds: number[];
  readonly accuracy: Interval;
  readonly loss: Interval;
  /** The search the cells ran (for the methods that depend on it), in a few words. */
  readonly searchSettings: string;
  /** Validation accuracy, when every cell scored validation. */
  readonly validation?: Interval;
  /** Accuracy on the training rows as trained, when every cell scored them. */
  readonly train?: Interval;
  readonly params: number;
  /** Mean layers chosen. */
  readonly layers: number;
  readonly search: Interval;
  readonly retrain: Interval;
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The cells grouped by task, regime, options and method (in the order first seen), summarized over seeds. */
export function summarize(records: readonly CellRecord[]): Summary[] {
  const groups = new Map<string, CellRecord[]>();
  for (const r of records) {
    const options = r.method === "lora" ? r.options : `${r.options} ${r.flexora}`;
    const key = JSON.stringify([r.task, r.regime, options, r.method, keyOptions(r.method, r.resolved)]);
    (groups.get(key) ?? groups.set(key, []).get(key)!).push(r);
  }
  return [...groups.values()].map((rs) => {
    const r = rs[0];
    return {
      task: r.task,
      regime: r.regime,
      method: r.method,
      options: r.method === "lora" ? r.options : `${r.options} ${r.flexora}`,
      seeds: rs.map((x) => x.seed).sort((a, b) => a - b),
      searchSettings: r.method === "lora" ? "-" : describeSearch(r.resolved.search),
      accuracy: tInterval(rs.map((x) => x.test.accuracy)),
      loss: tInterval(rs.map((x) => x.test.loss)),
      ...(rs.every((x) => x.validation) && { validation: tInterval(rs.map((x) => x.validation!.accuracy)) }),
      ...(rs.every((x) => x.train) && { train: tInterval(rs.map((x) => x.train!.accuracy)) }),
      params: mean(rs.map((x) => x.trainableParams)),
      layers: mean(rs.map((x) => x.layers.length)),
      search: tInterval(rs.map((x) => x.seconds.search)),
      retrain: tInterval(rs.map((x) => x.seconds.retrain)),
    };
  });
}

/** A search's settings in a few words: `lr 0.0001, gate 0.01, 1 ep` and what differs from the paper's code. */
export function describeSearch(s: FinetuneOptions["search"] | undefined): string {
  if (!s) return "-";
  const extra = [
    // Cells from before an option existed lack it: they ran its default.
    (s.gateForm ?? "linear") !== "linear" && s.gateForm,
    (s.gateNormalization ?? "per-layer") !== "per-layer" && `${s.gateNormalization} norm`,
    (s.hypergradient ?? "first-order") !== "first-order" && s.hypergradient,
  ].filter(Boolean);
  return [`lr ${s.loraLr}, gate ${s.gateLr}, ${s.epochs} ep`, ...extra].join(", ");
}

/** `0.912 ± 0.021` (or `0.912` for one seed). */
export function formatInterval(i: Interval, digits = 3): string {
  return Number.isNaN(i.half)
    ? i.mean.toFixed(digits)
    : `${i.mean.toFixed(digits)} ± ${i.half.toFixed(digits)}`;
}

/** Summaries sorted for reading: by regime (rows, noise, shift, lr, rank), task, method order. */
function ordered(summaries: readonly Summary[]): Summary[] {
  const regimeOrder = (r: Regime) =>
    [r.shift === "none" ? "" : r.shift, r.noise, r.lr, r.rank, r.rows, r.epochs] as const;
  return [...summaries].sort((a, b) => {
    const ra = regimeOrder(a.regime), rb = regimeOrder(b.regime);
    for (let i = 0; i < ra.length; i++) {
      if (ra[i] !== rb[i]) return ra[i] < rb[i] ? -1 : 1;
    }
    return a.task.localeCompare(b.task) || METHODS.indexOf(a.method) - METHODS.indexOf(b.method) ||
      a.options.localeCompare(b.options);
  });
}

/** The Markdown table: one row per task, regime, options and method. */
export function markdownTable(summaries: readonly Summary[]): string {
  const plain = (o: string) => o === "{}" || o === "{} {}";
  const showOptions = summaries.some((s) => !plain(s.options));
  const showValidation = summaries.some((s) => s.validation);
  const showTrain = summaries.some((s) => s.train);
  const head = [
    "regime",
    "task",
    "method",
    ...(showOptions ? ["options"] : []),
    "search",
    "seeds",
    "test accuracy (95 % CI)",
    "test loss (95 % CI)",
    ...(showValidation ? ["validation accuracy"] : []),
    ...(showTrain ? ["train accuracy"] : []),
    "params",
    "layers",
    "search s",
    "retrain s",
  ];
  const lines = [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`];
  for (const s of ordered(summaries)) {
    const cells = [
      regimeLabel(s.regime),
      s.task,
      s.method,
      ...(showOptions ? [plain(s.options) ? "-" : `\`${s.options}\``] : []),
      s.searchSettings,
      String(s.seeds.length),
      formatInterval(s.accuracy),
      formatInterval(s.loss),
      ...(showValidation ? [s.validation ? formatInterval(s.validation) : "-"] : []),
      ...(showTrain ? [s.train ? formatInterval(s.train) : "-"] : []),
      String(Math.round(s.params)),
      s.layers.toFixed(1),
      s.search.mean.toFixed(1),
      s.retrain.mean.toFixed(1),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

/** The issue's targets, each checked against the summaries: a verdict line with its numbers. */
export function targets(summaries: readonly Summary[], storyTasks: readonly string[]): string[] {
  // A flexora variant: its options and the search they resolved to (defaults may differ between runs).
  const variant = (s: Summary) => `${s.options} ${s.searchSettings}`;
  const find = (task: string, regime: Regime, options: string, method: Method) =>
    summaries.find((s) =>
      s.task === task && s.method === method && JSON.stringify(s.regime) === JSON.stringify(regime) &&
      (method === "lora" ? options.startsWith(s.options) : variant(s) === options)
    );
  const flexoras = summaries.filter((s) => s.method === "flexora" && storyTasks.includes(s.task));
  const regimes = new Map<string, { regime: Regime; options: string; label: string }>();
  for (const s of flexoras) {
    const label = `${regimeLabel(s.regime)} [search ${s.searchSettings}]`;
    regimes.set(JSON.stringify([s.regime, variant(s)]), { regime: s.regime, options: variant(s), label });
  }
  const out: string[] = [];
  // 1. Flexora beats random-k with non-overlapping intervals on >= 2 of 3 story tasks in some regime.
  const beats: string[] = [];
  for (const { regime, options, label } of regimes.values()) {
    const won = storyTasks.filter((t) => {
      const f = find(t, regime, options, "flexora"), r = find(t, regime, options, "random-k");
      return f && r && f.accuracy.lo > r.accuracy.hi;
    });
    if (won.length >= 2) beats.push(`${label} (${won.join(", ")})`);
  }
  out.push(
    `Flexora > random-k, intervals apart, on ≥ 2 of ${storyTasks.length} story tasks in some regime: ` +
      (beats.length ? `met in ${beats.join("; ")}` : "not met in any regime run"),
  );
  // 2. At <= 128 rows, flexora >= lora on >= 2 tasks with <= 60 % of its parameters.
  const small: string[] = [];
  for (const { regime, options, label } of regimes.values()) {
    if (regime.rows > 128) continue;
    const ok = storyTasks.filter((t) => {
      const f = find(t, regime, options, "flexora"), l = find(t, regime, options, "lora");
      return f && l && f.accuracy.mean >= l.accuracy.mean && f.params <= 0.6 * l.params;
    });
    const ratio = storyTasks.map((t) => {
      const f = find(t, regime, options, "flexora"), l = find(t, regime, options, "lora");
      return f && l
        ? `${t} ${f.accuracy.mean.toFixed(3)} vs ${l.accuracy.mean.toFixed(3)}, ${
          (100 * f.params / l.params).toFixed(0)
        } %`
        : `${t} -`;
    });
    small.push(`${label}: ${ok.length >= 2 ? "met" : "not met"} (${ratio.join("; ")})`);
  }
  out.push(
    `At ≤ 128 rows, Flexora ≥ all-layer LoRA on ≥ 2 tasks with ≤ 60 % of its parameters: ${
      small.join(" | ") || "no such regime run"
    }`,
  );
  // 3. Search time <= 0.3 x retrain time.
  const ratios = flexoras.map((s) => ({ s, ratio: s.search.mean / s.retrain.mean }));
  const worst = ratios.reduce((a, b) => (b.ratio > a.ratio ? b : a), ratios[0]);
  out.push(
    ratios.length
      ? `Search ≤ 0.3 × retrain: ${
        ratios.filter((r) => r.ratio <= 0.3).length
      } of ${ratios.length} flexora ` +
        `rows; highest ${worst.ratio.toFixed(2)} (${worst.s.task}, ${regimeLabel(worst.s.regime)})`
      : "Search ≤ 0.3 × retrain: no flexora rows",
  );
  return out;
}

/** What the accuracy plot shows: its summaries and the setting they share. */
export interface PlotSelection {
  readonly summaries: Summary[];
  readonly lr: number;
  readonly rank: number;
  /** The search (in {@link describeSearch}'s words) of the flexora and k-method lines. */
  readonly search: string;
}

/**
 * The accuracy plot's summaries: the plain regimes (no noise, no shift, default epochs, no `--options` or
 * `--flexora`) at the commonest learning rate and rank; flexora and the k methods under one search, today's
 * default (`defaultSearch` of that lr and rank) where it ran, else the one run at most points (defaults change
 * between runs: a variant gets a table row, not a line); and every method only at the tasks and row counts
 * where that search ran, so the lines compare like with like (all-layer LoRA has no search, and would otherwise
 * show points, or a whole task, that no flexora line shares). Undefined when no plain flexora row exists.
 */
export function plotSelection(
  summaries: readonly Summary[],
  defaultSearch: (lr: number, rank: number) => string,
): PlotSelection | undefined {
  const commonest = <T>(xs: readonly T[]) =>
    xs.reduce(
      (best, x) => (xs.filter((y) => y === x).length > xs.filter((y) => y === best).length ? x : best),
      xs[0],
    );
  const sweep = summaries.filter((s) =>
    s.regime.noise === 0 && s.regime.shift === "none" && s.regime.epochs === defaultEpochs(s.regime.rows) &&
    (s.options === "{}" || s.options === "{} {}")
  );
  const flexoras = sweep.filter((s) => s.method === "flexora");
  if (flexoras.length === 0) return undefined;
  const lr = commonest(flexoras.map((s) => s.regime.lr));
  const rank = commonest(flexoras.filter((s) => s.regime.lr === lr).map((s) => s.regime.rank));
  const plain = sweep.filter((s) => s.regime.lr === lr && s.regime.rank === rank);
  const searches = plain.filter((s) => s.method === "flexora").map((s) => s.searchSettings);
  const search = searches.includes(defaultSearch(lr, rank)) ? defaultSearch(lr, rank) : commonest(searches);
  const point = (s: Summary) => `${s.task} ${s.regime.rows}`;
  const points = new Set(
    plain.filter((s) => s.method === "flexora" && s.searchSettings === search).map(point),
  );
  return {
    summaries: plain.filter((s) =>
      points.has(point(s)) && (s.method === "lora" || s.searchSettings === search)
    ),
    lr,
    rank,
    search,
  };
}

const COLORS: Record<Method, string> = {
  "flexora": "#d62728",
  "lora": "#1f77b4",
  "random-k": "#7f7f7f",
  "grad-top-k": "#2ca02c",
};

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * Accuracy against training rows (log scale), one panel per task, one line per method with its 95 % interval
 * as error bars; from the summaries of one setting (the caller filters: no noise, no shift, one lr and rank).
 */
export function accuracySvg(summaries: readonly Summary[], title: string): string {
  const tasks = [...new Set(summaries.map((s) => s.task))];
  const rows = [...new Set(summaries.map((s) => s.regime.rows))].sort((a, b) => a - b);
  const W = 260, H = 220, pad = { l: 44, r: 10, t: 28, b: 36 }, legend = 24;
  const width = tasks.length * W, height = H + legend + 20;
  const lows = summaries.map((s) => Number.isNaN(s.accuracy.lo) ? s.accuracy.mean : s.accuracy.lo);
  const yMin = Math.max(0, Math.floor(Math.min(...lows, 1) * 10) / 10), yMax = 1;
  const lx = (r: number) => Math.log2(r);
  const [x0, x1] = [lx(rows[0]), lx(rows.at(-1)!)];
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="14" text-anchor="middle" font-size="12">${esc(title)}</text>`,
  ];
  tasks.forEach((task, ti) => {
    const ox = ti * W + pad.l, oy = 20 + pad.t, pw = W - pad.l - pad.r, ph = H - pad.t - pad.b;
    const X = (r: number) => ox + 12 + (x1 === x0 ? (pw - 24) / 2 : ((lx(r) - x0) / (x1 - x0)) * (pw - 24));
    const Y = (a: number) => oy + ph - ((a - yMin) / (yMax - yMin)) * ph;
    parts.push(`<text x="${ox + pw / 2}" y="${oy - 8}" text-anchor="middle">${esc(task)}</text>`);
    parts.push(`<rect x="${ox}" y="${oy}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
    for (let a = yMin; a <= yMax + 1e-9; a += 0.1) {
      const y = Y(a).toFixed(1);
      parts.push(`<line x1="${ox}" y1="${y}" x2="${ox + pw}" y2="${y}" stroke="#eee"/>`);
      parts.push(`<text x="${ox - 4}" y="${y}" text-anchor="end" dy="3">${a.toFixed(1)}</text>`);
    }
    for (const r of rows) {
      parts.push(`<text x="${X(r).toFixed(1)}" y="${oy + ph + 14}" text-anchor="middle">${r}</text>`);
    }
    parts.push(`<text x="${ox + pw / 2}" y="${oy + ph + 28}" text-anchor="middle">training rows</text>`);
    if (ti === 0) {
      parts.push(
        `<text transform="translate(${ox - 34},${
          oy + ph / 2
        }) rotate(-90)" text-anchor="middle">test accuracy</text>`,
      );
    }
    METHODS.forEach((method, mi) => {
      const pts = summaries.filter((s) => s.task === task && s.method === method)
        .sort((a, b) => a.regime.rows - b.regime.rows);
      if (pts.length === 0) return;
      const dx = (mi - 1.5) * 3; // side by side, so the error bars do not hide each other
      const xy = pts.map((s) => [X(s.regime.rows) + dx, Y(s.accuracy.mean)] as const);
      parts.push(
        `<polyline fill="none" stroke="${COLORS[method]}" stroke-width="1.5" points="${
          xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ")
        }"/>`,
      );
      pts.forEach((s, i) => {
        const [x, y] = xy[i];
        if (!Number.isNaN(s.accuracy.half)) {
          const lo = Y(Math.max(yMin, s.accuracy.lo)), hi = Y(Math.min(yMax, s.accuracy.hi));
          parts.push(
            `<line x1="${x.toFixed(1)}" y1="${lo.toFixed(1)}" x2="${x.toFixed(1)}" y2="${
              hi.toFixed(1)
            }" stroke="${COLORS[method]}"/>`,
          );
        }
        parts.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="2.5" fill="${COLORS[method]}"/>`);
      });
    });
  });
  const present = METHODS.filter((m) => summaries.some((s) => s.method === m));
  present.forEach((m, i) => {
    const x = 20 + i * 120, y = H + 30;
    parts.push(`<line x1="${x}" y1="${y}" x2="${x + 20}" y2="${y}" stroke="${COLORS[m]}" stroke-width="2"/>`);
    parts.push(`<text x="${x + 26}" y="${y + 4}">${esc(m)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

/**
 * How often two methods trained the same layers in the same task, regime, options and seed: `[same, pairs]`
 * (flexora against grad-top-k says whether the search chose anything a gradient at initialisation does not).
 */
export function sameLayers(records: readonly CellRecord[], a: Method, b: Method): [number, number] {
  const where = (r: CellRecord) =>
    JSON.stringify([r.task, r.regime, r.options, r.flexora, r.resolved?.search, r.seed]);
  const first = new Map(records.filter((r) => r.method === a).map((r) => [where(r), r.layers.join()]));
  let same = 0, pairs = 0;
  for (const r of records) {
    if (r.method !== b || !first.has(where(r))) continue;
    pairs++;
    if (first.get(where(r)) === r.layers.join()) same++;
  }
  return [same, pairs];
}

/**
 * Choosing layers from the searched gates (Flexora's selection step).
 *
 * @module
 */

/**
 * Which layers to keep: logit above 0 (the paper's rule), the K highest, logit above a threshold, or (`validation`)
 * the gate-ranked prefix of 1 to K layers whose retrained adapter has the lowest validation loss.
 */
export type SelectionRule =
  | { readonly kind: "positive" }
  | { readonly kind: "top-k"; readonly k: number }
  | { readonly kind: "threshold"; readonly threshold: number }
  | { readonly kind: "validation"; readonly k: number };

/** Parses `positive`, `top-k:K`, `threshold:T` or `validation:K`; anything else is an error naming the value. */
export function parseSelection(text: string): SelectionRule {
  if (text === "positive") return { kind: "positive" };
  const [kind, arg, ...rest] = text.split(":");
  const n = Number(arg);
  if (rest.length === 0 && arg !== undefined && arg !== "") {
    if ((kind === "top-k" || kind === "validation") && Number.isInteger(n) && n > 0) return { kind, k: n };
    if (kind === "threshold" && Number.isFinite(n)) return { kind, threshold: n };
  }
  throw new Error(
    `unknown selection '${text}': expected positive, top-k:K, validation:K (K a positive integer) or threshold:T`,
  );
}

/** Formats a rule the way {@link parseSelection} reads it. */
export function formatSelection(rule: SelectionRule): string {
  switch (rule.kind) {
    case "positive":
      return "positive";
    case "threshold":
      return `threshold:${rule.threshold}`;
    default:
      return `${rule.kind}:${rule.k}`;
  }
}

/**
 * The selected layers (ascending), the ranking of all layers by logit (highest first), and a warning if any. For
 * the `validation` rule, `candidates` are the gate-ranked prefixes to retrain (sizes 1 to K, each ascending) and
 * `layers` the largest of them, until the retrains choose.
 */
export interface Selection {
  readonly layers: number[];
  readonly ranking: number[];
  readonly candidates?: number[][];
  readonly warning?: string;
}

/**
 * Applies a rule to the final gate logits.
 *
 * @example
 * ```ts
 * import { parseSelection, selectLayers } from "./select.ts";
 * const { layers } = selectLayers([0.4, -0.2, 0.1], parseSelection("positive"));
 * if (layers.join() !== "0,2") throw new Error(`got ${layers}`);
 * ```
 * The selection is never empty: when the rule keeps no layer, the
 * top-ranked layer is kept and a warning says so.
 */
export function selectLayers(
  logits: readonly number[],
  rule: SelectionRule = { kind: "positive" },
): Selection {
  if (logits.length === 0) throw new Error("cannot select layers from an empty list of gate logits");
  const bad = logits.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`gate logit of layer ${bad} is ${logits[bad]}; the search diverged`);
  const ranking = [...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b);
  let kept: number[];
  switch (rule.kind) {
    case "positive":
      kept = ranking.filter((l) => logits[l] > 0);
      break;
    case "threshold":
      kept = ranking.filter((l) => logits[l] > rule.threshold);
      break;
    case "top-k":
      kept = ranking.slice(0, Math.min(rule.k, logits.length));
      break;
    case "validation": {
      const sizes = [...Array(Math.min(rule.k, logits.length)).keys()].map((i) => i + 1);
      const candidates = sizes.map((k) => ranking.slice(0, k).sort((a, b) => a - b));
      return { layers: candidates.at(-1)!, ranking, candidates };
    }
  }
  if (kept.length > 0) return { layers: kept.sort((a, b) => a - b), ranking };
  return {
    layers: [ranking[0]],
    ranking,
    warning: `rule ${formatSelection(rule)} kept no layer; keeping the top-ranked layer ${ranking[0]}`,
  };
}

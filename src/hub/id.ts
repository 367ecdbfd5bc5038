/**
 * Hub model ids: `org/name` or `org/name@revision` (a branch, tag or commit hash).
 *
 * @module
 */

/** A model repository on the Hub and the revision asked for. */
export interface HubId {
  /** `org/name`. */
  readonly repo: string;
  /** Branch, tag or 40-hex commit; `main` when the id names none. */
  readonly revision: string;
}

const PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Parses `org/name[@revision]`; null when `text` is not shaped like a Hub id (a path such as `./x`, `/abs/dir`,
 * `a/b/c` or a bare name).
 *
 * @example
 * ```ts
 * import { parseHubId } from "./id.ts";
 * const id = parseHubId("HuggingFaceTB/SmolLM2-135M@v1.0");
 * if (id?.repo !== "HuggingFaceTB/SmolLM2-135M" || id.revision !== "v1.0") throw new Error("org/name@rev");
 * if (parseHubId("fixtures/tiny-llama")?.revision !== "main") throw new Error("main by default");
 * if (parseHubId("./models/x") !== null || parseHubId("/abs/dir") !== null) throw new Error("paths are not ids");
 * ```
 */
export function parseHubId(text: string): HubId | null {
  const at = text.indexOf("@");
  const repo = at < 0 ? text : text.slice(0, at);
  const revision = at < 0 ? "main" : text.slice(at + 1);
  const parts = repo.split("/");
  if (parts.length !== 2 || !parts.every((p) => PART.test(p) && !p.includes(".."))) return null;
  if (revision === "" || revision.includes("..") || /\s/.test(revision)) return null;
  return { repo, revision };
}

/** True for a 40-hex git commit hash. */
export function isCommitHash(revision: string): boolean {
  return /^[0-9a-f]{40}$/.test(revision);
}

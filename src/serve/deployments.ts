/**
 * Configured servers as deployments: one name, one kind, and one or more replicas (base URLs) that serve the same
 * model. Plugins speak to one URL; the sidecar fans out over {@link replicasOf}.
 *
 * @module
 */

import type { ServerConfig, ServerKind } from "../../plugins/types.ts";
import { isSafeName, nameProblem } from "../util/safe_name.ts";

/** A configured server: one deployment, served by one or more replicas. */
export interface DeploymentConfig extends ServerConfig {
  /**
   * Base URLs of every replica (default: `[url]`); `url` is the first. Attach, detach and the reconcile loop act
   * on each, one by one.
   */
  readonly replicas?: readonly string[];
}

/** The kinds a server entry may name. */
export const SERVER_KINDS: readonly ServerKind[] = [
  "vllm",
  "sglang",
  "lorax",
  "llamacpp",
  "ollama",
  "embedded",
];

const FIELDS = new Set(["name", "kind", "url", "replicas", "token", "baseModel", "options"]);

/** One single-URL configuration per replica of `server`, for the plugins. */
export function replicasOf(server: DeploymentConfig): ServerConfig[] {
  const { replicas, ...rest } = server;
  return (replicas ?? [server.url]).map((url) => ({ ...rest, url }));
}

function isHttpUrl(s: unknown): s is string {
  if (typeof s !== "string") return false;
  try {
    const url = new URL(s);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

/**
 * Checks server entries (`[{name, kind, url | replicas, token?, baseModel?, options?}]`, as `--servers FILE`
 * holds them) and returns them with `url` set to the first replica. Errors start with `source` and name the entry
 * and the offending value.
 *
 * @example
 * ```ts
 * import { parseServers } from "./deployments.ts";
 * const [s] = parseServers([{ name: "vllm-a", kind: "vllm", replicas: ["http://10.0.0.1:8000", "http://10.0.0.2:8000"] }]);
 * if (s.url !== "http://10.0.0.1:8000" || s.replicas?.length !== 2) throw new Error("replicas");
 * ```
 */
export function parseServers(json: unknown, source = "servers"): DeploymentConfig[] {
  if (!Array.isArray(json)) {
    throw new Error(`${source}: expected a JSON array of servers, got ${typeof json}`);
  }
  const names = new Set<string>();
  return json.map((entry, i) => {
    const at = (field: string) =>
      `${source}: server ${i}${typeof entry?.name === "string" ? ` ('${entry.name}')` : ""}: '${field}'`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new Error(`${source}: server ${i} must be an object, got ${JSON.stringify(entry)}`);
    }
    const unknown = Object.keys(entry).find((k) => !FIELDS.has(k));
    if (unknown) throw new Error(`${at(unknown)} is not a server field (${[...FIELDS].join(", ")})`);
    const { name, kind, url, replicas, token, baseModel, options } = entry;
    if (!isSafeName(name)) throw new Error(`${at("name")} ${nameProblem(name)}`);
    if (names.has(name)) throw new Error(`${at("name")}: '${name}' is configured twice`);
    names.add(name);
    if (!SERVER_KINDS.includes(kind)) {
      throw new Error(`${at("kind")} must be one of ${SERVER_KINDS.join(", ")}, got ${JSON.stringify(kind)}`);
    }
    if ((url === undefined) === (replicas === undefined)) {
      throw new Error(
        `${at("url")}: give either 'url' or 'replicas' (a list of base URLs), not both or neither`,
      );
    }
    const urls: unknown[] = replicas === undefined ? [url] : Array.isArray(replicas) ? replicas : [];
    if (urls.length === 0 || !urls.every(isHttpUrl)) {
      const field = replicas === undefined ? "url" : "replicas";
      throw new Error(
        `${at(field)} must be ${
          field === "url" ? "an http(s) URL" : "a non-empty list of http(s) URLs"
        }, got ${JSON.stringify(replicas ?? url)}`,
      );
    }
    const twice = urls.find((u, j) => urls.indexOf(u) !== j);
    if (twice !== undefined) throw new Error(`${at("replicas")}: ${twice} is listed twice`);
    for (const [field, v] of [["token", token], ["baseModel", baseModel]] as const) {
      if (v !== undefined && typeof v !== "string") {
        throw new Error(`${at(field)} must be a string, got ${JSON.stringify(v)}`);
      }
    }
    if (
      options !== undefined && (typeof options !== "object" || options === null || Array.isArray(options))
    ) {
      throw new Error(`${at("options")} must be an object, got ${JSON.stringify(options)}`);
    }
    return {
      name,
      kind,
      url: urls[0] as string,
      ...(replicas === undefined ? {} : { replicas: urls as string[] }),
      ...(token === undefined ? {} : { token }),
      ...(baseModel === undefined ? {} : { baseModel }),
      ...(options === undefined ? {} : { options }),
    };
  });
}

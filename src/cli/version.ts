/**
 * `flexora version`: the tool's version and those of the runtime it computes with.
 *
 * @module
 */

import * as ort from "onnxruntime-node";
import denoJson from "../../deno.json" with { type: "json" };
import type { Command } from "./command.ts";

/** The tool's version, from deno.json. */
export const VERSION: string = denoJson.version;

export const version: Command = {
  name: "version",
  summary: "print the versions of flexora, onnxruntime and Deno",
  usage: "[--json]",
  options: {},
  help: {},
  run(values, _positionals, io) {
    const info = {
      flexora: VERSION,
      onnxruntime: ort.env.versions.node ?? "unknown",
      deno: Deno.version.deno,
    };
    io.out(values.json ? JSON.stringify(info) : Object.entries(info).map(([k, v]) => `${k} ${v}`).join("\n"));
    return Promise.resolve(0);
  },
};

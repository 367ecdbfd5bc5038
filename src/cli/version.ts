/**
 * `flexora version` (also `flexora --version`): the tool's version, those of the runtime it computes with, and
 * the execution providers that work here.
 *
 * @module
 */

import * as ort from "onnxruntime-node";
import denoJson from "../../deno.json" with { type: "json" };
import { providerStatus } from "../runtime/device.ts";
import type { Command } from "./command.ts";

/** The tool's version, from deno.json. */
export const VERSION: string = denoJson.version;

export const version: Command = {
  name: "version",
  summary: "print the versions of flexora, onnxruntime and Deno, and the execution providers that work here",
  usage: "[--json]",
  options: {},
  help: {},
  async run(values, _positionals, io) {
    const providers = await providerStatus();
    const info = {
      flexora: VERSION,
      onnxruntime: ort.env.versions.node ?? "unknown",
      deno: Deno.version.deno,
      providers: Object.entries(providers).filter(([, why]) => why === null).map(([p]) => p),
    };
    const unavailable = Object.fromEntries(
      Object.entries(providers).flatMap((
        [p, why],
      ) => (why === null ? [] : [[p, why.replace(/^.* was false\. /, "")]])),
    );
    if (values.json) io.out(JSON.stringify({ ...info, unavailable }));
    else {
      io.out(`flexora ${info.flexora}\nonnxruntime ${info.onnxruntime}\ndeno ${info.deno}`);
      io.out(`execution providers: ${info.providers.join(", ")}`);
      for (const [p, why] of Object.entries(unavailable)) io.out(`  not ${p}: ${why}`);
    }
    return 0;
  },
};

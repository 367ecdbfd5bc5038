/**
 * `flexora plot (JOB_ID | ADAPTER_DIR) --out FILE.svg`: the gate chart and loss curves as a standalone SVG, from an
 * adapter's `flexora.json` or a sidecar job's record.
 *
 * @module
 */

import { basename, join, resolve } from "node:path";
import { hasFlexoraJson, readFlexoraJson } from "../flexora/flexora_json.ts";
import { fromJob, fromReport, renderSvg } from "../report/svg.ts";
import { openStore, SqliteStore, type Store } from "../serve/store/mod.ts";
import { requireString } from "./args.ts";
import { type Command, UsageError } from "./command.ts";
import { storeOption } from "./serve.ts";

export const plotCommand: Command = {
  name: "plot",
  summary: "draw the gates per layer and the loss curves of a run as an SVG",
  usage: "(JOB_ID | ADAPTER_DIR) --out FILE.svg [--data-dir DIR | --store URL] [--json]",
  options: { out: { type: "string" }, "data-dir": { type: "string" }, store: { type: "string" } },
  help: {
    out: "FILE  where to write the SVG",
    "data-dir": "DIR  the sidecar's data dir, for a job id (default .flexora)",
    store:
      "URL  the sidecar's store, for a job id: sqlite:PATH or postgres://… (default: FLEXORA_STORE, else " +
      "jobs.sqlite in the data dir)",
  },
  async run(values, positionals, io) {
    const out = requireString(values, "out");
    const [target] = positionals;
    if (!target || positionals.length > 1) throw new UsageError("give one job id or adapter folder");
    let svg: string;
    if (await hasFlexoraJson(target)) {
      svg = renderSvg(fromReport(await readFlexoraJson(target), `adapter ${basename(resolve(target))}`));
    } else {
      const url = storeOption(values);
      let store: Store;
      if (url === undefined) {
        const file = join((values["data-dir"] as string | undefined) ?? ".flexora", "jobs.sqlite");
        const exists = await Deno.stat(file).then(() => true, () => false);
        if (!exists) {
          throw new UsageError(
            `'${target}' is neither an adapter folder (no flexora.json) nor a job (no ${file})`,
          );
        }
        store = new SqliteStore(file);
      } else store = await openStore(url, ".");
      const [job, history] = await Promise.all([store.get(target), store.history(target)])
        .finally(() => store.close());
      if (!job) {
        throw new UsageError(
          `'${target}' is neither an adapter folder (no flexora.json) nor a job in ${store.url}`,
        );
      }
      svg = renderSvg(fromJob(job, history));
    }
    await Deno.writeTextFile(out, svg);
    io.out(values.json ? JSON.stringify({ out, bytes: svg.length }) : `wrote ${out}`);
    return 0;
  },
};

/** A `flexora.json` for tests that fake a run (the sidecar's fake runners), written by the format's owner. */

import { join } from "node:path";
import { FLEXORA_FILE, flexoraJsonText, type FlexoraReport } from "../../src/flexora/flexora_json.ts";

/** Writes `<dir>/flexora.json` for a run of `method` that selected `selectedLayers`; the rest is placeholder. */
export async function writeFlexoraJson(
  dir: string,
  report: Pick<FlexoraReport, "method" | "selectedLayers" | "gates">,
): Promise<void> {
  await Deno.writeTextFile(
    join(dir, FLEXORA_FILE),
    flexoraJsonText({ metrics: {}, options: {}, seed: 0, dataHash: "", ...report }, {
      model: { path: "fixtures/tiny-llama", hash: "" },
      padded: false,
      lora: { rank: 8, alpha: 16, rslora: false },
    }),
  );
}

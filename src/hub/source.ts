/**
 * What `--model` names: a local folder, or a Hub id. A folder that exists wins, so `fixtures/tiny-llama` or
 * `out/merged` load from disk even though they are shaped like `org/name`; anything else shaped like
 * `org/name[@revision]` is fetched from the Hub; the rest is an error naming the path.
 *
 * @module
 */

import { resolve } from "node:path";
import { downloadModel, type DownloadModelOptions } from "./snapshot.ts";
import { HubError } from "./errors.ts";
import { parseHubId } from "./id.ts";

/**
 * The local folder for `model`: itself when it is a folder, else its Hub snapshot (downloaded if needed).
 *
 * @example
 * ```ts
 * import { modelDir } from "./source.ts";
 * const dir = await modelDir(new URL("../../fixtures/tiny-llama", import.meta.url).pathname);
 * if (!dir.endsWith("tiny-llama")) throw new Error("a folder that exists is used as is");
 * ```
 */
export async function modelDir(model: string, options: DownloadModelOptions = {}): Promise<string> {
  const local = await Deno.stat(model).then((s) => s, () => null);
  if (local?.isDirectory) return resolve(model);
  if (local) {
    throw new Error(`model ${JSON.stringify(model)} is a file; give its folder or a Hub id (org/name)`);
  }
  if (parseHubId(model) === null) {
    throw new Error(
      `model ${JSON.stringify(model)}: no such folder, and not a Hub id (org/name or org/name@revision)`,
    );
  }
  try {
    return (await downloadModel(model, options)).dir;
  } catch (e) {
    if (!(e instanceof HubError) || e.kind !== "not-found") throw e;
    throw new HubError(
      "not-found",
      `${e.message}; there is no local folder ${JSON.stringify(model)} either`,
      {
        cause: e,
      },
    );
  }
}

/**
 * Headless Chromium for the dashboard's browser tests: Debian's package (`apt-get install chromium`), driven by
 * playwright-core (whose own browser download cannot be reached here). `FLEXORA_CHROMIUM` names another binary.
 * Screenshots go to `artifacts/` at the project root (or `FLEXORA_ARTIFACTS`).
 *
 * @module
 */

import { join } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { ROOT } from "../model/shared.ts";

/** The Chromium binary the tests drive. */
export const CHROMIUM: string = Deno.env.get("FLEXORA_CHROMIUM") ?? "/usr/bin/chromium";

/** Where screenshots are written. */
export const ARTIFACTS: string = Deno.env.get("FLEXORA_ARTIFACTS") ?? join(ROOT, "artifacts");

/**
 * Starts the browser. The flags keep Chromium off the network it cannot reach here (without them it opens many
 * refused connections at every start) and let it run as root in CI.
 */
export async function launch(): Promise<Browser> {
  const found = await Deno.stat(CHROMIUM).catch(() => null);
  if (!found) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: install Debian's (apt-get install chromium; .ci/run does) or set FLEXORA_CHROMIUM`,
    );
  }
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** The path of an artifact, creating the folder. */
export async function artifact(name: string): Promise<string> {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

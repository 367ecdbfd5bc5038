/**
 * Runs the dashboard's browser tests (`dashboard_browser.ts`) in a child `deno test --allow-all`: playwright-core
 * probes `/proc/sys/fs/binfmt_misc/WSLInterop` when it loads, and Deno lets a program read that file only with
 * every permission, which the project's test command does not grant (its network access is 127.0.0.1 only).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "../model/shared.ts";

Deno.test("the dashboard in headless Chromium (tests/browser/dashboard_browser.ts)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", "--no-check", join(ROOT, "tests/browser/dashboard_browser.ts")],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const log = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, log);
  assert.match(log, /ok \| 1 passed \| 0 failed/, log);
});

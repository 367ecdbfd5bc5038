/**
 * What the job-lifecycle tests share (tests/serve/lifecycle_*_test.ts) beyond ./helpers.ts: a job manager on its
 * own, without the HTTP app.
 *
 * @module
 */

import { JobManager, type JobManagerOptions } from "../../src/serve/jobs.ts";
import { SqliteStore } from "../../src/serve/store/mod.ts";

/**
 * Runs `fn` with a started job manager over an in-memory store, its data in `dir` and no servers (`attach`
 * refuses); then closes the manager and the store, and removes `dir`.
 */
export async function withManager(
  dir: string,
  options: Omit<Partial<JobManagerOptions>, "store" | "dataDir">,
  fn: (manager: JobManager) => Promise<void>,
): Promise<void> {
  const store = new SqliteStore(":memory:");
  const manager = new JobManager({
    store,
    dataDir: dir,
    servers: [],
    attach: () => Promise.reject(new Error("no attach")),
    ...options,
  });
  await manager.start();
  try {
    await fn(manager);
  } finally {
    await manager.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

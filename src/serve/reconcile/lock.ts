/**
 * A promise-chain mutex: work runs one piece at a time, in the order it asked.
 *
 * @module
 */

/**
 * One-at-a-time execution.
 *
 * @example
 * ```ts
 * import { Mutex } from "./lock.ts";
 * const lock = new Mutex(), order: number[] = [];
 * await Promise.all([
 *   lock.run(async () => (await new Promise((r) => setTimeout(r, 5)), order.push(1))),
 *   lock.run(async () => order.push(2)),
 * ]);
 * if (order.join() !== "1,2") throw new Error(order.join());
 * ```
 */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `work` once everything queued before it has settled; its result or error is passed through. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(work, work);
    this.#tail = result.catch(() => {});
    return result;
  }
}

/**
 * One first-in, first-out queue of onnxruntime runs per server. Generation enqueues each model step (prefill, then
 * one decode per token) separately, so concurrent requests take turns step by step while no two runs ever overlap.
 *
 * @module
 */

/**
 * Runs tasks one at a time, in the order they were queued.
 *
 * @example
 * ```ts
 * import { SerialQueue } from "./queue.ts";
 * const queue = new SerialQueue();
 * const order: number[] = [];
 * await Promise.all([1, 2, 3].map((i) => queue.run(async () => void order.push(i))));
 * if (order.join() !== "1,2,3") throw new Error(`ran out of order: ${order}`);
 * ```
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #pending = 0;

  /** Tasks queued or running. */
  get pending(): number {
    return this.#pending;
  }

  /** Runs `task` after every task queued before it has settled; resolves or rejects with its result. */
  run<T>(task: () => Promise<T>): Promise<T> {
    this.#pending++;
    const result = this.#tail.then(task).finally(() => this.#pending--);
    this.#tail = result.catch(() => {});
    return result;
  }
}

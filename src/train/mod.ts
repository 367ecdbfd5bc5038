/**
 * Optimizers, schedules and the train-step graph.
 *
 * @module
 */

export * from "./optim.ts";
export * from "./schedule.ts";
export * from "./step.ts";

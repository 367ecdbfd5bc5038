/**
 * Optimizers, schedules and the train-step graph.
 *
 * @module
 */

export * from "./loss_scale.ts";
export * from "./optim.ts";
export * from "./schedule.ts";
export * from "./state.ts";
export * from "./step.ts";

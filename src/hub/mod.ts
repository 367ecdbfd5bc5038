/**
 * Models from the Hugging Face Hub in the shared Hugging Face cache: ids, settings from the environment,
 * resumable verified downloads. Below `model/`; imports nothing of flexora's.
 *
 * @module
 */

export * from "./cache.ts";
export * from "./download.ts";
export * from "./errors.ts";
export * from "./id.ts";
export * from "./settings.ts";
export * from "./snapshot.ts";
export * from "./source.ts";

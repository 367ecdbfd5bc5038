/**
 * Paths to the read-only material beside the project (`../shared`): tests read it in place, never copy it.
 *
 * @module
 */

import { fileURLToPath as fromFileUrl } from "node:url";

/** The project root. */
export const ROOT: string = fromFileUrl(new URL("../../", import.meta.url));
/** stories260K: a real pretrained Llama with grouped-query attention, Hugging Face layout. */
export const STORIES: string = fromFileUrl(new URL("../../../shared/models/stories260K", import.meta.url));
/** Task data: story-object, story-place, story-mood. */
export const DATA: string = fromFileUrl(new URL("../../../shared/data", import.meta.url));

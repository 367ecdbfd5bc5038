/**
 * Hex encoding of digests.
 *
 * @module
 */

/** Lower-case hex of bytes. */
export function encodeHex(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

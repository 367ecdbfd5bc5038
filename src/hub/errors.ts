/**
 * The one error the Hub layer throws: what happened, to which file, and what to do.
 *
 * @module
 */

/** Why a Hub operation failed. */
export type HubErrorKind =
  | "gated" // 401/403: private or gated repository without (the right) token
  | "not-found" // 404: repository, revision or file
  | "offline" // offline mode or no network, and the cache lacks the files
  | "corrupt" // downloaded bytes do not match the sha256 or size the Hub reported
  | "interrupted" // the connection broke; the partial file is kept and resumed next time
  | "disk-full"
  | "http"; // any other status

/** Thrown by src/hub: `kind` for programs, a message for people. */
export class HubError extends Error {
  override name = "HubError";
  readonly kind: HubErrorKind;
  constructor(kind: HubErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

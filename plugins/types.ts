/**
 * The contract between the sidecar and an inference server's adapter registry. One plugin per server kind
 * (`plugins/<kind>/mod.ts`), listed in one explicit table (`plugins/mod.ts`), all run through one shared
 * conformance suite (`tests/plugins/conformance.ts`).
 *
 * A capability a server lacks throws {@link UnsupportedError}, which says so and what to do instead.
 *
 * @module
 */

/** The kinds of server flexora can attach adapters to. */
export type ServerKind = "vllm" | "sglang" | "lorax" | "llamacpp" | "ollama" | "embedded";

/** A configured server (one deployment). */
export interface ServerConfig {
  /** Name in flexora's configuration, `isSafeName` (src/util/safe_name.ts). */
  readonly name: string;
  readonly kind: ServerKind;
  /** Base URL, e.g. `http://127.0.0.1:8000`. */
  readonly url: string;
  /** Bearer token the server expects, if any. */
  readonly token?: string;
  /** The base model the server serves (vLLM's `--model`), for checks and resolver directories. */
  readonly baseModel?: string;
  /** Kind-specific settings (vLLM: `maxLoraRank`, `resolverDir`; LoRAX: `adapterDir`; Ollama: `baseModel`; …). */
  readonly options?: Readonly<Record<string, unknown>>;
}

/** An adapter to attach: a PEFT folder written by flexora, and the name to serve it under. */
export interface AdapterRef {
  /** Name requests use to select the adapter, `isSafeName` (src/util/safe_name.ts). */
  readonly name: string;
  /** Absolute path of the PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`). */
  readonly path: string;
  /** LoRA rank, checked against a server's limit before loading. */
  readonly rank: number;
  /** Version label; each version lives in its own folder (servers re-read evicted adapters from their path). */
  readonly version?: string;
}

/** What a server can do with adapters. */
export interface Capabilities {
  /** Load a new adapter file while running. */
  readonly load: boolean;
  readonly unload: boolean;
  /** List loaded adapters. */
  readonly list: boolean;
  /** Generate text or log-probabilities, so an attach can be verified by output. */
  readonly generate: boolean;
}

/** Verification of an attach: listed, and (where the server can generate) output that differs from the base. */
export interface Verification {
  readonly listed: boolean;
  /** True when the adapter's output differed from the base model's; null when the server cannot generate. */
  readonly changesOutput: boolean | null;
  readonly detail: string;
}

/** What an attach did. */
export interface AttachResult {
  readonly server: string;
  readonly adapter: string;
  readonly verification: Verification;
  /** Attempts made (1 when the first succeeded). */
  readonly attempts: number;
  readonly millis: number;
}

/** Context of a plugin call: the HTTP client (tests may substitute one), a stop signal, retry settings. */
export interface CallContext {
  readonly fetch: typeof fetch;
  readonly signal?: AbortSignal;
  /** Retries on connection errors and 5xx (default 4), with exponential backoff from `backoffMs` (default 200). */
  readonly retries?: number;
  readonly backoffMs?: number;
  /** A short prompt used to compare adapter and base outputs. */
  readonly probePrompt?: string;
}

/** One server kind. */
export interface ServerPlugin {
  readonly kind: ServerKind;
  capabilities(server: ServerConfig): Capabilities;
  /** Makes the adapter usable under its name, then verifies it; throws {@link AttachError} on final failure. */
  attach(server: ServerConfig, adapter: AdapterRef, ctx: CallContext): Promise<AttachResult>;
  detach(server: ServerConfig, name: string, ctx: CallContext): Promise<void>;
  /** Names of the adapters the server has loaded. */
  list(server: ServerConfig, ctx: CallContext): Promise<string[]>;
  verify(server: ServerConfig, adapter: AdapterRef, ctx: CallContext): Promise<Verification>;
  /** True when the server answers at all (for `GET /v1/servers`). */
  reachable(server: ServerConfig, ctx: CallContext): Promise<boolean>;
}

/** A capability the server lacks; the message says what the server cannot do and what to do instead. */
export class UnsupportedError extends Error {
  override name = "UnsupportedError";
}

/** An attach or detach that failed for good; `status` and `serverMessage` are the server's last answer. */
export class AttachError extends Error {
  override name = "AttachError";
  readonly status?: number;
  readonly serverMessage?: string;
  constructor(message: string, options: { status?: number; serverMessage?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.status = options.status;
    this.serverMessage = options.serverMessage;
  }
}

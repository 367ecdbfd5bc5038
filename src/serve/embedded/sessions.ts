/**
 * Step-graph sessions, one per adapter configuration plus one for the base model.
 *
 * LoRA weights are inputs of the step graph, so every adapter with the same rank, target modules and layers runs
 * on one session. The LoRA scale (α/R, or α/√R with rsLoRA) is a constant in the graph; sessions are built with a
 * scale of 1 and each adapter's `lora_B` is multiplied by its own scale when it is loaded
 * ({@link ./registry.ts}), so adapters that differ only in `lora_alpha` or rsLoRA share a session too.
 *
 * Each session prepacks its own copy of the base weights, so a session no loaded adapter needs is released as
 * soon as no request holds it.
 *
 * @module
 */

import { buildStepGraph, kvOutputs } from "../../model/graphs.ts";
import type { LoraConfig } from "../../model/lora.ts";
import type { Model } from "../../model/model.ts";
import type { Session } from "../../runtime/session.ts";

/** The key of the base model's session. */
export const BASE_KEY = "base";

/** The session key of an adapter configuration: rank, targets and layers (the scale is folded into the weights). */
export function configKey(config: LoraConfig): string {
  return `r${config.rank}:${config.targets.join(",")}:${config.layers.join(",")}`;
}

/** The configuration a shared session is built with: the adapter's shapes, scale 1. */
export function unitScaleConfig(config: LoraConfig): LoraConfig {
  return {
    rank: config.rank,
    alpha: config.rank,
    rslora: false,
    targets: config.targets,
    layers: config.layers,
  };
}

/** A session held for the length of one request. */
export interface Lease {
  readonly session: Session;
  /** Gives the session back; idempotent. */
  release(): void;
}

/** How sessions are created: onnxruntime's threads and execution providers (default: the model's defaults). */
export interface SessionPoolOptions {
  readonly threads?: number;
  readonly providers?: string[];
}

interface Entry {
  readonly session: Promise<Session>;
  refs: number;
}

/**
 * Sessions by configuration, built on first use and shared by every request for that configuration. `wanted(key)`
 * says whether a loaded adapter still needs a key; other sessions are released when their last lease ends.
 */
export class SessionPool {
  readonly #entries = new Map<string, Entry>();

  constructor(
    readonly model: Model,
    readonly wanted: (key: string) => boolean,
    readonly options: SessionPoolOptions = {},
  ) {}

  /** Keys of the sessions built or being built. */
  get keys(): string[] {
    return [...this.#entries.keys()];
  }

  /** Holds the session of `config` (null: the base model), building it first when needed. */
  async acquire(config: LoraConfig | null): Promise<Lease> {
    const key = config ? configKey(config) : BASE_KEY;
    let entry = this.#entries.get(key);
    if (!entry) {
      const { model } = this;
      const built = buildStepGraph(
        model.config,
        model.weights,
        config ? { config: unitScaleConfig(config) } : undefined,
      );
      // The KV cache stays on the device between decode steps (WebGPU; elsewhere it is host memory anyway).
      const options = { ...this.options, deviceOutputs: kvOutputs(model.config) };
      entry = { session: model.session(built, options), refs: 0 };
      this.#entries.set(key, entry);
    }
    entry.refs++;
    let session: Session;
    try {
      session = await entry.session;
    } catch (e) {
      entry.refs--;
      if (this.#entries.get(key) === entry) this.#entries.delete(key); // the next request tries again
      throw e;
    }
    let held = true;
    return {
      session,
      release: () => {
        if (!held) return;
        held = false;
        entry.refs--;
        if (entry.refs === 0) this.#dropIfUnwanted(key, entry);
      },
    };
  }

  /** Releases every session that no request holds and no loaded adapter needs. */
  prune(): void {
    for (const [key, entry] of [...this.#entries]) {
      if (entry.refs === 0) this.#dropIfUnwanted(key, entry);
    }
  }

  /** Releases every session; call once no request is running. */
  async close(): Promise<void> {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.all(entries.map(async (e) => (await e.session.catch(() => null))?.release()));
  }

  #dropIfUnwanted(key: string, entry: Entry): void {
    if (key === BASE_KEY || this.wanted(key) || this.#entries.get(key) !== entry) return;
    this.#entries.delete(key);
    entry.session.then((s) => s.release()).catch(() => {});
  }
}

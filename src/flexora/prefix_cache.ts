/**
 * The frozen-prefix cache of retraining: with LoRA only at and above layer l, the residual stream entering l is
 * a fixed function of each sequence's tokens (causal attention and right padding make a sequence's rows
 * independent of what it is batched with). It is computed once per sequence, by the prefix graph, and fed to a
 * train graph that starts at l in every later epoch, so those epochs skip the frozen layers' forward.
 *
 * Rows are kept in memory up to a budget and appended to a temporary file beyond it (read back by offset); the
 * file is removed on {@link PrefixCache.release}. Legend: B batch, T longest sequence, D width.
 *
 * @module
 */

import { batchFeeds, type Sequence } from "../data/sequence.ts";
import { allocate, type DType, type HostArray } from "../graph/dtype.ts";
import { type HostTensor, hostTensor, type Session } from "../runtime/session.ts";

/** Where a sequence's rows [len, D] are: in memory, or at a byte range of the spill file. */
type Entry = { data: HostArray } | { offset: number; bytes: number };

/** Bytes held by a cache. */
export interface PrefixCacheStats {
  readonly memoryBytes: number;
  readonly diskBytes: number;
  readonly sequences: number;
}

/** Options of a {@link PrefixCache}. */
export interface PrefixCacheOptions {
  /** The prefix graph's session (see `buildPrefixGraph`): token feeds in, `output` [B, T, D] out. */
  readonly session: Session;
  /** Name of the session's output (and the train graph's input). */
  readonly output: string;
  /** Width D and type of the rows. */
  readonly width: number;
  readonly dtype: DType;
  /** Bytes kept in memory; rows past it go to a temporary file. */
  readonly budgetBytes: number;
  /** Padding token of the batches run through the prefix graph. */
  readonly padId?: number;
}

/** Each sequence's prefix rows, computed on first use. */
export class PrefixCache {
  readonly #o: PrefixCacheOptions;
  readonly #entries = new Map<Sequence, Entry>();
  #memoryBytes = 0;
  #diskBytes = 0;
  #file?: { path: string; handle: Deno.FsFile };

  constructor(options: PrefixCacheOptions) {
    if (!(options.budgetBytes >= 0)) {
      throw new Error(`the prefix cache's budget must be a number of bytes >= 0, got ${options.budgetBytes}`);
    }
    this.#o = options;
  }

  /** What the cache holds. */
  get stats(): PrefixCacheStats {
    return { memoryBytes: this.#memoryBytes, diskBytes: this.#diskBytes, sequences: this.#entries.size };
  }

  /**
   * The prefix rows of `batch`, right-padded with zeros to [B, T, D] as `batchFeeds` pads the tokens (padding
   * rows are never read by a real token: they are masked keys, and their own losses are ignored).
   */
  async feeds(batch: readonly Sequence[]): Promise<HostTensor> {
    const missing = [...new Set(batch.filter((s) => !this.#entries.has(s)))];
    if (missing.length) await this.#compute(missing);
    const D = this.#o.width, T = Math.max(...batch.map((s) => s.ids.length));
    const out = allocate(this.#o.dtype, batch.length * T * D);
    for (const [b, s] of batch.entries()) {
      // deno-lint-ignore no-explicit-any
      (out as any).set(await this.#read(s), b * T * D);
    }
    return hostTensor(this.#o.dtype, [batch.length, T, D], out);
  }

  /** Closes and removes the spill file. */
  async release(): Promise<void> {
    if (!this.#file) return;
    this.#file.handle.close();
    await Deno.remove(this.#file.path);
    this.#file = undefined;
  }

  async #compute(seqs: readonly Sequence[]): Promise<void> {
    const { [this.#o.output]: rows } = await this.#o.session.run(
      batchFeeds(seqs, this.#o.padId ?? 0),
      [this.#o.output],
    );
    const D = this.#o.width, T = rows.dims[1];
    for (const [b, s] of seqs.entries()) {
      const data = rows.data.slice(b * T * D, (b * T + s.ids.length) * D) as HostArray;
      if (this.#memoryBytes + data.byteLength <= this.#o.budgetBytes) {
        this.#entries.set(s, { data });
        this.#memoryBytes += data.byteLength;
      } else {
        this.#entries.set(s, await this.#spill(data));
      }
    }
  }

  async #spill(data: HostArray): Promise<Entry> {
    if (!this.#file) {
      const path = await Deno.makeTempFile({ prefix: "flexora-prefix-" });
      this.#file = { path, handle: await Deno.open(path, { read: true, write: true }) };
    }
    const offset = this.#diskBytes;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    await this.#file.handle.seek(offset, Deno.SeekMode.Start);
    for (let done = 0; done < bytes.length;) done += await this.#file.handle.write(bytes.subarray(done));
    this.#diskBytes += bytes.length;
    return { offset, bytes: bytes.length };
  }

  async #read(s: Sequence): Promise<HostArray> {
    const e = this.#entries.get(s)!;
    if ("data" in e) return e.data;
    const bytes = new Uint8Array(e.bytes);
    await this.#file!.handle.seek(e.offset, Deno.SeekMode.Start);
    for (let done = 0; done < bytes.length;) {
      const n = await this.#file!.handle.read(bytes.subarray(done));
      if (n === null) {
        throw new Error(`prefix cache file ${this.#file!.path} ended at byte ${e.offset + done}`);
      }
      done += n;
    }
    const out = allocate(this.#o.dtype, e.bytes / allocate(this.#o.dtype, 0).BYTES_PER_ELEMENT);
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
}

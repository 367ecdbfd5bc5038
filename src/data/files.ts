/**
 * The files a dataset is read from, each read once: their absolute paths in reading order and a SHA-256 over
 * their bytes, which identifies the data in reports.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from "node:url";
 * import { DataFiles } from "./files.ts";
 * const files = new DataFiles();
 * const rows = await files.jsonl(fileURLToPath(new URL("../../fixtures/tiny-data/test.jsonl", import.meta.url)));
 * if (rows.length === 0 || files.files.length !== 1 || files.hash().length !== 64) throw new Error("read once");
 * ```
 *
 * @module
 */

import { createHash } from "node:crypto";
import { resolve } from "node:path";
import Bunzip from "seek-bzip";
import { DataError, type JsonlRow, parseJsonl } from "./jsonl.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Decompresses bzip2 bytes (seek-bzip: pure JavaScript, checks the block and stream CRCs). */
export function bunzip2(bytes: Uint8Array): Uint8Array {
  return Bunzip.decode(bytes);
}

/** Reads files, remembering each one's absolute path and bytes for {@link DataFiles.hash}. */
export class DataFiles {
  readonly #files: string[] = [];
  readonly #hash = createHash("sha256");

  /** Absolute paths of the files read so far, in reading order. */
  get files(): readonly string[] {
    return this.#files;
  }

  /** SHA-256 (hex) over the bytes of every file read, in reading order. */
  hash(): string {
    return this.#hash.copy().digest("hex");
  }

  /** The bytes of `file`; a {@link DataError} naming it when it cannot be read. */
  async bytes(file: string): Promise<Uint8Array> {
    const path = resolve(file);
    let bytes: Uint8Array;
    try {
      // Reading a FIFO or a device would block (or never end): only regular files are data.
      if (!(await Deno.stat(path)).isFile) {
        throw new DataError(`${path}: not a regular file (a FIFO, a device or a folder)`);
      }
      bytes = await Deno.readFile(path);
    } catch (e) {
      if (e instanceof DataError) throw e;
      const why = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message;
      throw new DataError(`${path}: cannot read (${why})`, { cause: e });
    }
    this.#files.push(path);
    this.#hash.update(bytes);
    return bytes;
  }

  /** The UTF-8 text of `file` (bzip2-decompressed first when its name ends in `.bz2`). */
  async text(file: string): Promise<string> {
    const path = resolve(file);
    let bytes = await this.bytes(path);
    if (path.endsWith(".bz2")) {
      try {
        bytes = bunzip2(bytes);
      } catch (e) {
        throw new DataError(`${path}: not valid bzip2 data (${(e as Error).message})`, { cause: e });
      }
    }
    try {
      return utf8.decode(bytes);
    } catch (e) {
      throw new DataError(`${path}: not valid UTF-8 text`, { cause: e });
    }
  }

  /** The non-blank lines of JSON Lines `file` (errors give `file:line`). */
  async jsonl(file: string): Promise<JsonlRow[]> {
    const path = resolve(file);
    return parseJsonl(await this.text(path), path);
  }
}

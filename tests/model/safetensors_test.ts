import assert from "node:assert/strict";
import { join } from "node:path";
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  openCheckpoint,
  readHeader,
  readTensorF32,
  writeSafetensors,
} from "../../src/model/safetensors.ts";
import { Rng } from "../../src/util/random.ts";
import { fileURLToPath } from "node:url";

const STORIES = fileURLToPath(new URL("../../../shared/models/stories260K", import.meta.url));

const f32 = (bits: number[]) => new Float32Array(new Uint32Array(bits).buffer);
const bitsOf = (x: Float32Array) => [...new Uint32Array(x.buffer, x.byteOffset, x.length)];
const hex = (xs: ArrayLike<number>) => Array.from(xs, (x) => "0x" + x.toString(16));

Deno.test("bf16 bit patterns widen exactly: ±0, subnormal, ±inf, NaN", () => {
  const out = bf16ToF32(new Uint16Array([0x3f80, 0xc000, 0x8000, 0x0001, 0x7f80, 0xff80, 0x7fc1]));
  assert.deepEqual(
    hex(bitsOf(out)),
    hex([0x3f800000, 0xc0000000, 0x80000000, 0x10000, 0x7f800000, 0xff800000, 0x7fc10000]),
  );
  assert.ok(Object.is(out[2], -0) && out[3] === 2 ** -133 && Number.isNaN(out[6]));
});

Deno.test("f32 → bf16 rounds half to even, overflows to inf, keeps NaN", () => {
  const cases: [number, number][] = [
    [0x3f800000, 0x3f80], // 1
    [0x3f808000, 0x3f80], // halfway, even stays
    [0x3f818000, 0x3f82], // halfway, odd rounds up
    [0x3f808001, 0x3f81], // just above halfway
    [0x80000000, 0x8000], // -0
    [0x7f7fffff, 0x7f80], // largest float rounds to inf
    [0xff800000, 0xff80], // -inf
    [0x7f800001, 0x7fc0], // NaN with only low payload bits stays NaN
    [0xffc00000, 0xffc0], // negative NaN
  ];
  assert.deepEqual(hex(f32ToBf16(f32(cases.map((c) => c[0])))), hex(cases.map((c) => c[1])));
});

Deno.test("f16 bit patterns widen exactly: subnormals, max, ±0, ±inf, NaN", () => {
  const out = f16ToF32(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x03ff, 0x8000, 0x3555]));
  assert.deepEqual([...out], [1, -2, 65504, 2 ** -14, 2 ** -24, 1023 * 2 ** -24, -0, 0.333251953125]);
  assert.ok(Object.is(out[6], -0));
  const special = f16ToF32(new Uint16Array([0x7c00, 0xfc00, 0x7e00, 0xfd01]));
  assert.deepEqual([...special.subarray(0, 2)], [Infinity, -Infinity]);
  assert.ok(Number.isNaN(special[2]) && Number.isNaN(special[3]));
});

Deno.test("f32 → f16 rounds half to even, into subnormals, to zero and to inf", () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [1 + 2 ** -11, 0x3c00], // halfway, even stays
    [1 + 3 * 2 ** -11, 0x3c02], // halfway, odd rounds up
    [65504, 0x7bff],
    [65519, 0x7bff], // below halfway to the next power
    [65520, 0x7c00], // halfway: rounds to inf
    [2 ** -14, 0x0400],
    [2 ** -24, 0x0001],
    [2 ** -25, 0x0000], // halfway between 0 and the smallest subnormal: even is 0
    [1.5 * 2 ** -25, 0x0001],
    [3 * 2 ** -25, 0x0002], // 1.5 units: even is 2
    [1023.5 * 2 ** -24, 0x0400], // largest subnormal + half carries into the smallest normal
    [-0, 0x8000],
    [1e-10, 0x0000],
    [-Infinity, 0xfc00],
  ];
  assert.deepEqual(hex(f32ToF16(new Float32Array(cases.map((c) => c[0])))), hex(cases.map((c) => c[1])));
  const nan = f32ToF16(f32([0x7f800001, 0xffc00000]));
  assert.ok((nan[0] & 0x7c00) === 0x7c00 && (nan[0] & 0x3ff) !== 0 && (nan[1] & 0x8000) !== 0);
});

Deno.test("every 16-bit pattern survives widening then narrowing, for F16 and BF16", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  for (
    const [widen, narrow, expMask] of [[f16ToF32, f32ToF16, 0x7c00], [bf16ToF32, f32ToBf16, 0x7f80]] as const
  ) {
    const back = narrow(widen(all));
    for (let i = 0; i < 65536; i++) {
      const nan = (i & expMask) === expMask && (i & ~expMask & 0x7fff) !== 0;
      if (nan) assert.ok(Number.isNaN(widen(back.subarray(i, i + 1))[0]), `NaN ${hex([i])}`);
      else assert.equal(back[i], i, `pattern ${hex([i])}`);
    }
  }
});

Deno.test("f32 → f16 and bf16 pick the nearest representable value", () => {
  const rng = new Rng(11);
  const x = new Float32Array(20_000).map(() => rng.normal() * 2 ** rng.int(-28, 13));
  for (const [narrow, widen] of [[f32ToF16, f16ToF32], [f32ToBf16, bf16ToF32]] as const) {
    const h = narrow(x);
    for (let i = 0; i < x.length; i++) {
      const [y, below, above] = widen(new Uint16Array([h[i], h[i] - 1, h[i] + 1]));
      const err = Math.abs(x[i] - y);
      for (const n of [below, above]) if (Number.isFinite(n)) assert.ok(err <= Math.abs(x[i] - n), `${x[i]}`);
    }
  }
});

function randomData(rng: Rng, n: number): Float32Array {
  return new Float32Array(n).map(() => rng.normal());
}

Deno.test("write then read: F32 exact, F16/BF16 within their rounding, order, padding, metadata", async () => {
  const rng = new Rng(3);
  const path = join(await Deno.makeTempDir(), "t.safetensors");
  const x = randomData(rng, 6 * 5), y = randomData(rng, 7), z = randomData(rng, 4 * 3);
  await writeSafetensors(path, [
    { name: "z.f32", dtype: "F32", shape: [4, 3], data: z },
    { name: "a.bf16", dtype: "BF16", shape: [7], data: y },
    { name: "m.f16", dtype: "F16", shape: [6, 5], data: x },
    { name: "empty", dtype: "F32", shape: [0, 3], data: new Float32Array(0) },
  ], { format: "pt" });
  const header = await readHeader(path);
  assert.deepEqual(header.metadata, { format: "pt" });
  assert.equal(header.dataOffset % 8, 0);
  const bytes = await Deno.readFile(path);
  const json = new TextDecoder().decode(bytes.subarray(8, header.dataOffset));
  assert.match(json, /^\{"__metadata__":\{"format":"pt"\},"z.f32":\{"dtype":"F32".*\} *$/);
  assert.deepEqual(header.tensors.map((t) => t.name), ["z.f32", "a.bf16", "m.f16", "empty"]);
  const [tz, ty, tx, empty] = header.tensors;
  assert.deepEqual([tz.offset, ty.offset, tx.offset], [
    header.dataOffset,
    header.dataOffset + 48,
    header.dataOffset + 62,
  ]);
  assert.deepEqual([tz.shape, tx.dtype, tx.length, tx.file], [[4, 3], "F16", 60, path]);
  assert.deepEqual(await readTensorF32(tz), z);
  assert.deepEqual(await readTensorF32(ty), bf16ToF32(f32ToBf16(y)));
  assert.deepEqual(await readTensorF32(tx), f16ToF32(f32ToF16(x)));
  assert.equal((await readTensorF32(empty)).length, 0);
  (await readTensorF32(ty)).forEach((v, i) => assert.ok(Math.abs(v - y[i]) <= Math.abs(y[i]) * 2 ** -8));
  (await readTensorF32(tx)).forEach((v, i) =>
    assert.ok(Math.abs(v - x[i]) <= Math.abs(x[i]) * 2 ** -11 + 2 ** -25)
  );
  await writeSafetensors(path, [{ name: "w", dtype: "F32", shape: [1], data: new Float32Array([5]) }]);
  assert.deepEqual((await readHeader(path)).metadata, {}, "an existing file is replaced");
  const left = await Array.fromAsync(Deno.readDir(join(path, "..")), (e) => e.name);
  assert.deepEqual(left, ["t.safetensors"], "no temp file is left behind");
});

Deno.test("stories260K's real model.safetensors: header, dtype, shape and finite float32 data", async () => {
  const ckpt = await openCheckpoint(STORIES);
  assert.deepEqual(ckpt.files, [join(STORIES, "model.safetensors")]);
  const embed = ckpt.get("model.embed_tokens.weight");
  assert.deepEqual([embed.dtype, embed.shape], ["F32", [512, 64]]);
  const data = await readTensorF32(embed);
  assert.equal(data.length, 512 * 64);
  assert.ok(data.every(Number.isFinite) && data.some((v) => v !== 0));
  assert.equal(ckpt.get("model.layers.4.mlp.down_proj.weight").shape.join(), "64,172");
  assert.equal((await readHeader(join(STORIES, "model.safetensors"))).metadata.format, "pt");
});

Deno.test("a sharded checkpoint opens through its index", async () => {
  const dir = await Deno.makeTempDir(), rng = new Rng(5);
  const a = randomData(rng, 8), b = randomData(rng, 6), c = randomData(rng, 2);
  await writeSafetensors(join(dir, "model-00002-of-00002.safetensors"), [
    { name: "c", dtype: "F32", shape: [2], data: c },
  ]);
  await writeSafetensors(join(dir, "model-00001-of-00002.safetensors"), [
    { name: "a", dtype: "BF16", shape: [2, 4], data: a },
    { name: "b", dtype: "F32", shape: [3, 2], data: b },
  ]);
  const weight_map = { a: "model-00001-of-00002.safetensors", c: "model-00002-of-00002.safetensors" };
  await Deno.writeTextFile(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ metadata: {}, weight_map }),
  );
  const ckpt = await openCheckpoint(dir);
  assert.deepEqual(ckpt.files, [join(dir, weight_map.a), join(dir, weight_map.c)]);
  assert.deepEqual([...ckpt.tensors.keys()], ["a", "c"]);
  assert.deepEqual(await readTensorF32(ckpt.get("a")), bf16ToF32(f32ToBf16(a)));
  assert.deepEqual(await readTensorF32(ckpt.get("c")), c);
  assert.throws(() => ckpt.get("b"), (e: Error) => e.message.includes("'b'") && e.message.includes(dir));
});

/** A file of an 8-byte length, then `header` (JSON-encoded unless a string), then `data` zero bytes. */
async function rawFile(dir: string, header: unknown, data = 0, name = "model.safetensors"): Promise<string> {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const bytes = new Uint8Array(8 + json.length + data);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(json, 8);
  const path = join(dir, name);
  await Deno.writeFile(path, bytes);
  return path;
}

/** Asserts that `run` rejects with a message naming `path` and matching `problem`. */
async function rejectsNaming(run: () => Promise<unknown>, path: string, problem: RegExp): Promise<void> {
  await assert.rejects(run, (e: Error) => {
    assert.ok(e.message.includes(path), `message does not name ${path}: ${e.message}`);
    assert.match(e.message, problem);
    return true;
  });
}

const F32x2 = { dtype: "F32", shape: [2], data_offsets: [0, 8] };

Deno.test("bad files: missing, too short, header length past the end, not JSON, not an object", async () => {
  const dir = await Deno.makeTempDir();
  await rejectsNaming(
    () => readHeader(join(dir, "nope.safetensors")),
    join(dir, "nope.safetensors"),
    /not found/,
  );
  const short = join(dir, "short.safetensors");
  await Deno.writeFile(short, new Uint8Array(5));
  await rejectsNaming(() => readHeader(short), short, /5 bytes, shorter than the 8-byte header length/);
  const long = await rawFile(dir, { w: F32x2 }, 8);
  const bytes = await Deno.readFile(long);
  new DataView(bytes.buffer).setBigUint64(0, 1n << 40n, true);
  await Deno.writeFile(long, bytes);
  await rejectsNaming(() => readHeader(long), long, /header length 1099511627776 is larger than the rest/);
  const notJson = await rawFile(dir, "{oops", 0, "a.safetensors");
  await rejectsNaming(() => readHeader(notJson), notJson, /header is not valid JSON/);
  const notObject = await rawFile(dir, [1, 2], 0, "b.safetensors");
  await rejectsNaming(() => readHeader(notObject), notObject, /header must be a JSON object, got an array/);
});

Deno.test("bad tensor entries: unknown dtype, non-integer shape, offsets not matching the shape", async () => {
  const dir = await Deno.makeTempDir();
  const dtype = await rawFile(dir, { w: { ...F32x2, dtype: "F8" } }, 8, "a.safetensors");
  await rejectsNaming(() => readHeader(dtype), dtype, /tensor 'w': unknown dtype "F8"/);
  const shape = await rawFile(dir, { w: { ...F32x2, shape: [2.5] } }, 8, "b.safetensors");
  await rejectsNaming(
    () => readHeader(shape),
    shape,
    /tensor 'w': shape must be a list of non-negative integers/,
  );
  const span = await rawFile(dir, { w: { ...F32x2, data_offsets: [0, 6] } }, 8, "c.safetensors");
  await rejectsNaming(
    () => readHeader(span),
    span,
    /tensor 'w': data_offsets \[0, 6\] hold 6 bytes, F32 \[2\] needs 8/,
  );
});

Deno.test("bad data: offsets past the end of a truncated file, overlapping tensors", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "model.safetensors");
  await writeSafetensors(path, [{ name: "w", dtype: "F32", shape: [4], data: new Float32Array(4) }]);
  await Deno.truncate(path, (await Deno.stat(path)).size - 3);
  await rejectsNaming(() => readHeader(path), path, /tensor 'w' ends at byte \d+, past the end .*truncated/);
  const overlap = await rawFile(
    dir,
    { a: F32x2, b: { ...F32x2, data_offsets: [4, 12] } },
    12,
    "o.safetensors",
  );
  await rejectsNaming(() => readHeader(overlap), overlap, /data of tensors 'a' and 'b' overlap/);
});

Deno.test("bad checkpoints: no weights, index naming a missing shard or a tensor not in its shard", async () => {
  const empty = await Deno.makeTempDir();
  await rejectsNaming(() => openCheckpoint(empty), empty, /found neither model.safetensors nor/);
  const dir = await Deno.makeTempDir(), index = join(dir, "model.safetensors.index.json");
  await rawFile(dir, { w: F32x2 }, 8, "s1.safetensors");
  await Deno.writeTextFile(
    index,
    JSON.stringify({ weight_map: { w: "s1.safetensors", v: "s2.safetensors" } }),
  );
  await rejectsNaming(() => openCheckpoint(dir), index, /shard .*s2.safetensors does not exist/);
  await Deno.writeTextFile(
    index,
    JSON.stringify({ weight_map: { w: "s1.safetensors", v: "s1.safetensors" } }),
  );
  await rejectsNaming(() => openCheckpoint(dir), index, /tensor 'v' is not in shard s1.safetensors/);
  await Deno.writeTextFile(index, "{");
  await rejectsNaming(() => openCheckpoint(dir), index, /not valid JSON/);
});

Deno.test("readTensorF32 refuses non-float dtypes, naming the tensor and dtype", async () => {
  const path = await rawFile(await Deno.makeTempDir(), {
    ids: { dtype: "I64", shape: [1], data_offsets: [0, 8] },
  }, 8);
  const [ids] = (await readHeader(path)).tensors;
  await rejectsNaming(
    () => readTensorF32(ids),
    path,
    /tensor 'ids' .*dtype I64 is not F32, F16, BF16 or F64/,
  );
});

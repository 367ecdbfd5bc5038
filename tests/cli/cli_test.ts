/**
 * The CLI entry point: the command overview, `--help` of every command, and unknown commands or options.
 */

import assert from "node:assert/strict";
import { COMMANDS } from "../../src/cli/main.ts";
import { flexora } from "./run.ts";

const COMMON_OPTIONS = ["help", "json", "debug"];

for (const cmd of COMMANDS) {
  Deno.test(`flexora ${cmd.name} --help lists every option and exits 0`, async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await flexora(cmd.name, flag);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.err, "");
      assert.ok(r.out.startsWith(`flexora ${cmd.name} ${cmd.usage}`), r.out);
      assert.ok(r.out.includes(cmd.summary));
      for (const name of [...Object.keys(cmd.options), ...COMMON_OPTIONS]) {
        assert.match(r.out, new RegExp(`^  --${name} `, "m"), `--${name} missing from:\n${r.out}`);
      }
    }
  });

  Deno.test(`flexora ${cmd.name}: every option has a --help line and every --help line an option`, () => {
    assert.deepEqual(Object.keys(cmd.help).sort(), Object.keys(cmd.options).sort());
  });
}

Deno.test("flexora with no command prints the overview and exits 2", async () => {
  const r = await flexora();
  assert.equal(r.code, 2);
  for (const cmd of COMMANDS) assert.match(r.out, new RegExp(`^  ${cmd.name} +${escape(cmd.summary)}$`, "m"));
});

Deno.test("flexora --help prints the overview and exits 0", async () => {
  for (const flag of ["--help", "-h", "help"]) {
    const r = await flexora(flag);
    assert.equal(r.code, 0);
    for (const cmd of COMMANDS) assert.match(r.out, new RegExp(`^  ${cmd.name} `, "m"));
  }
});

Deno.test("an unknown command exits 2 and names it and the commands there are", async () => {
  const r = await flexora("frobnicate", "--model", "x");
  assert.equal(r.code, 2);
  assert.equal(r.out, "");
  assert.match(r.err, /unknown command 'frobnicate'/);
  for (const cmd of COMMANDS) assert.ok(r.err.includes(cmd.name), r.err);
});

Deno.test("an unknown option exits 2 and names it", async () => {
  for (const cmd of COMMANDS) {
    const r = await flexora(cmd.name, "--bogus-option");
    assert.equal(r.code, 2, `${cmd.name}: ${r.err}`);
    assert.match(r.err, /'--bogus-option'/);
    assert.match(r.err, new RegExp(`flexora ${cmd.name} --help`));
  }
});

Deno.test("flexora --version and version --json: flexora, onnxruntime, Deno and the execution providers", async () => {
  const r = await flexora("version", "--json");
  assert.equal(r.code, 0, r.err);
  const info = JSON.parse(r.out);
  assert.deepEqual(Object.keys(info), ["flexora", "onnxruntime", "deno", "providers", "unavailable"]);
  assert.equal(info.deno, Deno.version.deno);
  assert.equal(info.onnxruntime, (await import("onnxruntime-node")).env.versions.node);
  assert.ok(info.providers.includes("cpu"));
  for (const p of ["webgpu", "cuda"]) assert.ok(info.providers.includes(p) !== p in info.unavailable, p);
  const text = await flexora("--version");
  assert.equal(text.code, 0, text.err);
  assert.match(
    text.out,
    new RegExp(`^flexora ${escape(info.flexora)}\nonnxruntime ${escape(info.onnxruntime)}\n`),
  );
  assert.match(text.out, new RegExp(`execution providers: ${info.providers.join(", ")}`));
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

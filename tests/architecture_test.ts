/**
 * The layers are one-way: this test reads every import of src/, plugins/ and mod.ts and checks them against the
 * layer order of docs/architecture.md. A failure names the importing file, the line and the imported path.
 */

import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/**
 * The layers, lowest first: a file may import its own layer and any layer below it. Layers on one rung do not
 * import each other.
 */
const LAYERS: readonly (readonly string[])[] = [
  ["src/util"],
  ["src/graph"],
  ["src/runtime"],
  ["src/train", "src/hub"],
  ["src/model"],
  ["src/data", "src/export"],
  ["src/flexora", "plugins"],
  ["src/report"],
  ["src/serve"],
  ["src/cli"],
  ["mod.ts"],
];

/** The layer of a path relative to the root (its first one or two segments), or null for a file outside them. */
function layerOf(path: string): string | null {
  if (path === "mod.ts") return "mod.ts";
  if (path.startsWith("plugins/")) return "plugins";
  const m = /^(src\/[a-z_]+)\//.exec(path);
  return m ? m[1] : null;
}

function rung(layer: string): number {
  const i = LAYERS.findIndex((r) => r.includes(layer));
  if (i < 0) throw new Error(`layer '${layer}' is not in LAYERS; add it where it belongs`);
  return i;
}

/** One import: the importing file, its line, and the imported file, all relative to the root. */
interface Edge {
  readonly from: string;
  readonly line: number;
  readonly to: string;
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^;]*?\sfrom\s*"(\.{1,2}\/[^"]+)"|import\s*\(?\s*"(\.{1,2}\/[^"]+)"/g;

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(join(ROOT, dir))) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) yield* sources(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

/** Every relative import of the project's source files (comments and doc examples excluded). */
async function edges(): Promise<Edge[]> {
  const out: Edge[] = [];
  const files = [
    ...await Array.fromAsync(sources("src")),
    ...await Array.fromAsync(sources("plugins")),
    "mod.ts",
  ];
  for (const from of files) {
    // Blank out comments (doc examples import freely) but keep line numbers.
    const text = (await Deno.readTextFile(join(ROOT, from)))
      .replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, " "))
      .replace(/(^|[^:"'`])\/\/[^\n]*/g, "$1");
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2];
      const line = text.slice(0, m.index! + m[0].length).split("\n").length;
      out.push({ from, line, to: relative(ROOT, join(ROOT, dirname(from), spec)) });
    }
  }
  return out;
}

const all = await edges();
const show = (e: Edge) => `${e.from}:${e.line} imports ${e.to}`;

Deno.test("the import scan sees the project's imports", () => {
  assert.ok(all.length > 300, `only ${all.length} imports found`);
  assert.ok(all.some((e) => e.from === "src/serve/runner.ts" && e.to === "src/flexora/mod.ts"));
});

Deno.test("every import goes to the importer's own layer or one below it", () => {
  const bad = all.filter((e) => {
    const a = layerOf(e.from), b = layerOf(e.to);
    if (a === null || b === null || a === b) return false;
    return rung(b) >= rung(a);
  });
  assert.deepEqual(bad.map(show), []);
});

Deno.test("nothing outside src/cli imports src/cli but the entry points", () => {
  const bad = all.filter((e) =>
    e.to.startsWith("src/cli/") && !e.from.startsWith("src/cli/") && e.from !== "mod.ts"
  );
  assert.deepEqual(bad.map(show), []);
});

Deno.test("src/model imports neither src/train nor src/flexora (nor anything above it)", () => {
  const bad = all.filter((e) =>
    e.from.startsWith("src/model/") &&
    /^(src\/(train|flexora|data|export|serve|cli|report)|plugins)\//.test(e.to)
  );
  assert.deepEqual(bad.map(show), []);
});

Deno.test("src/serve reaches src/flexora only through its public src/flexora/mod.ts", () => {
  const bad = all.filter((e) =>
    e.from.startsWith("src/serve/") && e.to.startsWith("src/flexora/") && e.to !== "src/flexora/mod.ts"
  );
  assert.deepEqual(bad.map(show), []);
});

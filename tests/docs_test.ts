/**
 * The documentation matches the tree and the CLI. README.md stays short and shows CI's test command; every
 * repository path README.md and docs/*.md name exists; docs/architecture.md's layout tree lists every folder and
 * source file of src/ and plugins/, each where it is; every flag shown in a `flexora …` or
 * `deno task flexora|finetune|serve …` command line is one that command's parser accepts (command lines in
 * `sh` and `text` blocks are parsed whole, as the command would parse them, without running it); JSDoc examples
 * never read ../shared, so the doc tests pass in a bare checkout.
 */

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "../src/cli/command.ts";
import { parseCommandArgs } from "../src/cli/command.ts";
import { COMMANDS } from "../src/cli/main.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** README.md and docs/*.md, as [path relative to the root, text]. */
function documents(): [string, string][] {
  const docs = readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) =>
    `docs/${f}`
  );
  return ["README.md", ...docs].map((f) => [f, readFileSync(join(ROOT, f), "utf8")]);
}

/** Fenced code blocks: their info string and body. */
function fencedBlocks(text: string): { lang: string; body: string }[] {
  return [...text.matchAll(/^```(\S*)\n(.*?)^```/gms)].map((m) => ({ lang: m[1], body: m[2] }));
}

/** Inline code spans outside fenced blocks (they may wrap over a line break). */
function inlineSpans(text: string): string[] {
  const prose = text.replace(/^```.*?^```/gms, "");
  return [...prose.matchAll(/(`+)([^`]+?)\1/g)].map((m) => m[2].replace(/\s*\n\s*/g, " "));
}

/** Top-level folders and files whose paths the docs name. */
const PATH =
  /(?<![\w./@-])((?:src|tests|plugins|bench|tools|fixtures|docs|\.ci)\/[\w./-]*|[\w-]+\.ts|deno\.json)/g;

/** Paths named in code spans and fenced blocks, from the repository root; placeholders are left out. */
function namedPaths(text: string): string[] {
  const code = [...inlineSpans(text), ...fencedBlocks(text).map((b) => b.body)].join("\n");
  const paths = [...code.matchAll(PATH)].map((m) => m[1].replace(/[.,:;]+$/, ""));
  // `src/cli/<command>.ts` yields `src/cli/` (which must exist); a bare `x.ts` is a root file only if alone.
  return paths.filter((p) => p.includes("/") || p === "deno.json" || p === "mod.ts");
}

/** Markdown links to files of the repository, resolved from the document's folder (anchors dropped). */
function linkedPaths(doc: string, text: string): string[] {
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((m) => m[1])
    .filter((href) => !/^[a-z]+:/.test(href) && !href.startsWith("#"))
    .map((href) => relative(ROOT, join(ROOT, dirname(doc), href.split("#")[0])));
}

Deno.test("README.md stays a five-minute read (at most 15 KB) and shows the test command CI runs", () => {
  const readme = readFileSync(join(ROOT, "README.md"));
  assert.ok(readme.length <= 15 * 1024, `README.md is ${readme.length} bytes; move detail into docs/*.md`);
  const ci = readFileSync(join(ROOT, ".ci/run"), "utf8").match(/^npx -y deno@[\d.]+ task test/m)?.[0];
  assert.ok(ci, ".ci/run runs no 'npx -y deno@… task test'");
  assert.ok(new TextDecoder().decode(readme).includes(ci), `README.md does not show '${ci}'`);
});

Deno.test("every repository path README.md and docs/*.md name exists", () => {
  const missing: string[] = [];
  for (const [doc, text] of documents()) {
    for (const p of [...namedPaths(text), ...linkedPaths(doc, text)]) {
      if (!existsSync(join(ROOT, p))) missing.push(`${doc}: ${p}`);
    }
  }
  assert.deepEqual(missing, []);
});

/**
 * The files of docs/architecture.md's layout tree, each joined to its folder: a line starting with `dir/` sets
 * the folder; an indented `sub/` line a subfolder; an indented file list names files of the top folder; other
 * (continuation) lines name files of the last folder set.
 */
function layoutFiles(text: string): string[] {
  const block = text.split(/^## Layout\n/m)[1]?.match(/```\n(.*?)```/s)?.[1];
  assert.ok(block, "docs/architecture.md has no '## Layout' code block");
  const files: string[] = [];
  let top = "";
  let current = "";
  const names = (s: string) =>
    [...s.matchAll(/(?<![\w./-])([\w-]+\.(?:ts|mjs|md|json))(?![\w-])/g)].map((m) => m[1]);
  for (const line of block.split("\n")) {
    let m;
    if ((m = line.match(/^(\S+\/)\s*(.*)$/))) {
      top = current = m[1];
      files.push(...names(m[2]).map((n) => top + n), top);
    } else if ((m = line.match(/^(\S+)\s+/))) {
      files.push(m[1]); // a root file such as mod.ts
    } else if ((m = line.match(/^ {2}([\w-]+\/)\s*(.*)$/))) {
      current = top + m[1];
      files.push(...names(m[2]).map((n) => current + n), current);
    } else if ((m = line.match(/^ {2}(\S.*?)(?: {2,}.*)?$/))) {
      current = top;
      files.push(...names(m[1]).map((n) => top + n));
    } else {
      files.push(...names(line).map((n) => current + n));
    }
  }
  return files;
}

Deno.test("every file in docs/architecture.md's layout tree exists where the tree puts it", () => {
  const files = layoutFiles(readFileSync(join(ROOT, "docs/architecture.md"), "utf8"));
  assert.ok(files.length > 50, `only ${files.length} files found in the layout tree`);
  assert.deepEqual(files.filter((f) => !existsSync(join(ROOT, f))), []);
});

Deno.test("docs/architecture.md's layout tree lists every folder and source file of src/ and plugins/", () => {
  const listed = new Set(layoutFiles(readFileSync(join(ROOT, "docs/architecture.md"), "utf8")));
  for (const f of [...listed]) { // `src/export/gguf/` lists `src/export/` too
    for (let d = dirname(f); d !== "."; d = dirname(d)) listed.add(`${d}/`);
  }
  const tree = (dir: string): string[] =>
    readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? [`${dir}/${e.name}/`, ...tree(`${dir}/${e.name}`)] : [`${dir}/${e.name}`]
    );
  // A folder's mod.ts only re-exports the folder, so the tree need not name it.
  const sources = [...tree("src"), ...tree("plugins")].filter((f) =>
    f.endsWith("/") || (f.endsWith(".ts") && !f.endsWith("/mod.ts"))
  );
  const unlisted = sources.filter((f) => !listed.has(f));
  assert.deepEqual(unlisted, [], "add these to the layout tree of docs/architecture.md");
});

const COMMON_FLAGS = ["help", "json", "debug"];

/** The command a command line runs, and the words after it: `flexora NAME …`, `deno task flexora NAME …`. */
function commandLine(text: string): { cmd: Command; rest: string } | null {
  const m = text.match(
    /(?:^|\s)(?:deno(?:@[\d.]+)? task (finetune|serve)\b|(?:deno(?:@[\d.]+)? task )?flexora ([\w-]+))(.*)$/s,
  );
  if (!m) return null;
  const name = m[1] ?? m[2];
  const cmd = COMMANDS.find((c) => c.name === name);
  return cmd ? { cmd, rest: m[3] } : null;
}

/** The words of a shell command line: quotes removed, up to a comment, `|`, `&&` or `;`. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|'([^']*)'|(#.*$|\|\|?|&&|;)|(\S+)/g)) {
    if (m[3] !== undefined) break;
    words.push(m[1] ?? m[2] ?? m[4]);
  }
  return words;
}

Deno.test("every flag a documented flexora command line shows is one its command accepts", () => {
  const unknown: string[] = [];
  let checked = 0;
  for (const [doc, text] of documents()) {
    for (const span of inlineSpans(text)) {
      const line = commandLine(span);
      if (!line) continue;
      checked++;
      const accepted = [...Object.keys(line.cmd.options), ...COMMON_FLAGS];
      for (const [, flag] of line.rest.matchAll(/(?<![\w-])--([a-z][\w-]*)/g)) {
        if (!accepted.includes(flag)) unknown.push(`${doc}: \`${span}\`: --${flag}`);
      }
    }
  }
  assert.deepEqual(unknown, []);
  assert.ok(checked >= 10, `only ${checked} command lines found in inline code`);
});

Deno.test("every flexora command line in a sh or text block parses as its command parses it", () => {
  const rejected: string[] = [];
  let checked = 0;
  for (const [doc, text] of documents()) {
    for (const block of fencedBlocks(text).filter((b) => ["sh", "text", ""].includes(b.lang))) {
      for (const raw of block.body.replace(/\\\n/g, " ").split("\n")) {
        const line = commandLine(raw);
        if (!line) continue;
        checked++;
        try {
          parseCommandArgs(line.cmd, shellWords(line.rest));
        } catch (e) {
          rejected.push(`${doc}: ${raw.trim()}: ${(e as Error).message}`);
        }
      }
    }
  }
  assert.deepEqual(rejected, []);
  assert.ok(checked >= 8, `only ${checked} command lines found in sh blocks`);
});

/** The TypeScript files whose JSDoc examples `deno test --doc` runs (mod.ts, src/, plugins/). */
function docTestedFiles(dir = ""): string[] {
  if (dir === "") return ["mod.ts", ...docTestedFiles("src"), ...docTestedFiles("plugins")];
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? docTestedFiles(`${dir}/${e.name}`) : e.name.endsWith(".ts") ? [`${dir}/${e.name}`] : []
  );
}

Deno.test("JSDoc examples use the project's own fixtures, never the sibling ../shared folder", () => {
  const offenders: string[] = [];
  for (const file of docTestedFiles()) {
    const text = readFileSync(join(ROOT, file), "utf8");
    for (const m of text.matchAll(/^\s*\*\s*```ts\n(.*?)^\s*\*\s*```/gms)) {
      if (/\bshared\//.test(m[1])) offenders.push(`${file}: ${m[1].match(/.*\bshared\/.*/)![0].trim()}`);
    }
  }
  assert.deepEqual(offenders, []);
});

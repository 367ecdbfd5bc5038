import assert from "node:assert/strict";
import { join } from "node:path";
import { reconcileLog, resolveToken, serveLog } from "../../src/cli/serve.ts";
import { resolveDevice } from "../../src/runtime/device.ts";
import { flexora } from "./run.ts";
import { PG_MISSING, TestPostgres } from "../serve/pg.ts";

Deno.test("serve --device: an unknown name is a usage error, an unavailable device stops the start", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "flexora-serve-" });
  try {
    const bogus = await flexora("serve", "--device", "tpu", "--data-dir", dataDir, "--port", "0");
    assert.equal(bogus.code, 2);
    assert.match(bogus.err, /--device.*tpu/);
    const why = await resolveDevice("cuda").then(() => null, (e: Error) => e.message);
    if (why === null) return; // a CUDA host: serve would start and wait for a signal
    const cuda = await flexora("serve", "--device", "cuda", "--data-dir", dataDir, "--port", "0");
    assert.equal(cuda.code, 1);
    assert.match(cuda.err, /device 'cuda' is unavailable/);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("serve refuses an empty token file and a short token off loopback before it starts", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "flexora-serve-token-" });
  try {
    await Deno.writeTextFile(join(dataDir, "token"), "\n", { mode: 0o600 });
    const empty = await flexora("serve", "--data-dir", dataDir, "--port", "0");
    assert.equal(empty.code, 2, empty.err);
    assert.match(empty.err, /the token file .*\/token holds an empty token: every request would be refused/);
    Deno.env.set("FLEXORA_TOKEN", "a");
    try {
      const short = await flexora("serve", "--data-dir", dataDir, "--host", "0.0.0.0", "--port", "0");
      assert.equal(short.code, 2, short.err);
      assert.match(short.err, /FLEXORA_TOKEN holds a token of 1 characters .*; refused on 0\.0\.0\.0/);
      Deno.env.set("FLEXORA_TOKEN", " ");
      const blank = await flexora("serve", "--data-dir", dataDir, "--port", "0");
      assert.match(blank.err, /FLEXORA_TOKEN holds an empty token/);
    } finally {
      Deno.env.delete("FLEXORA_TOKEN");
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("the token: a short one on loopback and a token file others can read are warned about", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "flexora-serve-token-" });
  try {
    const file = join(dataDir, "token");
    await Deno.writeTextFile(file, "0123456789abcdef0123\n", { mode: 0o644 });
    await Deno.chmod(file, 0o644);
    const lines: string[] = [];
    assert.equal(await resolveToken(dataDir, "127.0.0.1", (l) => lines.push(l)), "0123456789abcdef0123");
    assert.match(lines.join("\n"), /warning: the token file .* was readable by group or others \(mode 644\)/);
    await Deno.writeTextFile(file, "short\n");
    await Deno.chmod(file, 0o600);
    lines.length = 0;
    assert.equal(await resolveToken(dataDir, "127.0.0.1", (l) => lines.push(l)), "short");
    assert.deepEqual(lines, [
      `warning: the token file ${file} holds a token of 5 characters (at least 16 are advised); accepted only ` +
      "because 127.0.0.1 is loopback",
    ]);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("serve's log lines never show a server URL's password", () => {
  const lines: string[] = [];
  const log = reconcileLog(serveLog({ out: () => {}, err: (l) => lines.push(l) }));
  const url = "http://admin:PASSWORD@10.0.0.1:8000";
  log({
    trigger: "loop",
    server: "s",
    url,
    startedAt: 0,
    millis: 1,
    outcomes: [],
    error: `GET ${url}/v1/models: refused`,
  });
  assert.equal(lines.length, 1);
  assert.match(
    lines[0],
    /replica http:\/\/\*\*\*@10\.0\.0\.1:8000 is failing: GET http:\/\/\*\*\*@10\.0\.0\.1:8000\/v1\/models/,
  );
  assert.doesNotMatch(lines[0], /PASSWORD/);
});

Deno.test("serve --store: a bad URL is a usage error naming the flag or FLEXORA_STORE, its password hidden", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "flexora-serve-store-" });
  try {
    const flag = await flexora(
      "serve",
      "--store",
      "mysql://root:pw@db/jobs",
      "--data-dir",
      dataDir,
      "--port",
      "0",
    );
    assert.equal(flag.code, 2, flag.err);
    assert.match(
      flag.err,
      /--store: the store URL 'mysql:\/\/\*\*\*@db\/jobs' is neither sqlite:PATH nor postgres:/,
    );
    Deno.env.set("FLEXORA_STORE", "jobs.sqlite");
    try {
      const env = await flexora("serve", "--data-dir", dataDir, "--port", "0");
      assert.equal(env.code, 2, env.err);
      assert.match(env.err, /FLEXORA_STORE: the store URL 'jobs\.sqlite' is neither/);
    } finally {
      Deno.env.delete("FLEXORA_STORE");
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test({
  name: `serve --store postgres://…: a refused login stops the start with the reason${
    PG_MISSING ? ` (skipped: ${PG_MISSING})` : ""
  }`,
  ignore: PG_MISSING !== null,
  async fn() {
    const pg = await TestPostgres.start({ password: "right" });
    const dataDir = await Deno.makeTempDir({ prefix: "flexora-serve-pg-" });
    try {
      const r = await flexora(
        "serve",
        "--store",
        pg.url("flexora", "wrong"),
        "--data-dir",
        dataDir,
        "--port",
        "0",
      );
      assert.equal(r.code, 1, r.err);
      assert.match(
        r.err,
        new RegExp(
          `cannot open the store postgres://\\*\\*\\*@127\\.0\\.0\\.1:${pg.port}/flexora: the database refused the login`,
        ),
      );
      assert.ok(!r.err.includes("wrong"), r.err);
    } finally {
      await Deno.remove(dataDir, { recursive: true });
      await pg.close();
    }
  },
});

/** The sidecar's guards: the bearer scheme, the Host check, redaction of server credentials, file modes. */

import assert from "node:assert/strict";
import { HTTPException } from "hono/http-exception";
import { join } from "node:path";
import { bearerToken, redactSecrets, requireRegular } from "../../src/serve/security.ts";
import { testSidecar, TOKEN, waitFor } from "./helpers.ts";

Deno.test("the bearer scheme is case-insensitive (RFC 7235); other schemes and blank tokens are not bearer", () => {
  for (const header of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `BEARER ${TOKEN}`, `bEaReR   ${TOKEN}`]) {
    assert.equal(bearerToken(header), TOKEN, header);
  }
  for (
    const header of [undefined, "", "Bearer", "Bearer ", `Basic ${TOKEN}`, `Bearer${TOKEN}`, "Bearer a b"]
  ) {
    assert.equal(bearerToken(header), null, String(header));
  }
});

Deno.test("a request with `Authorization: bearer TOKEN` (lower case) is accepted", async () => {
  const s = await testSidecar();
  try {
    const res = await s.request("/v1/jobs", {
      method: "POST",
      body: s.body(),
      headers: { authorization: `bearer ${TOKEN}` },
    });
    assert.equal(res.status, 202, await res.clone().text());
    await waitFor(s.request, (await res.json()).id);
    const wrong = await s.request("/v1/jobs", {
      method: "POST",
      body: s.body(),
      headers: { authorization: "bearer nope" },
    });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
  } finally {
    await s.close();
  }
});

Deno.test("a device is not a model or data path: 400 naming it", async () => {
  const e = await requireRegular("data", "/dev/null").catch((e) => e);
  assert.ok(e instanceof HTTPException && e.status === 400, String(e));
  assert.match(e.message, /'data': "\/dev\/null" is a device, not a regular file or folder/);
  await requireRegular("data", Deno.cwd()); // a folder of regular files and folders passes
});

Deno.test("redactSecrets hides the userinfo of every URL and nothing else", () => {
  const cases: [string, string][] = [
    ["http://admin:PASSWORD@host:8000/v1", "http://***@host:8000/v1"],
    ["a https://u@h b ftp://x:y@z/p?q=r@s", "a https://***@h b ftp://***@z/p?q=r@s"],
    [
      '{"url":"http://a:b@c","e":"to http://a:b@c failed"}',
      '{"url":"http://***@c","e":"to http://***@c failed"}',
    ],
    ["http://host/path@x mail@example.com", "http://host/path@x mail@example.com"],
  ];
  for (const [text, want] of cases) assert.equal(redactSecrets(text), want);
});

/** A port nothing listens on: connections to it are refused. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test("a server URL's password shows nowhere: servers, adapters, metrics, attach errors, job records, the database", async () => {
  const url = `http://admin:PASSWORD@127.0.0.1:${closedPort()}`;
  const s = await testSidecar({
    servers: [{ name: "secret", kind: "vllm", url }],
    call: { fetch, retries: 0 },
  });
  try {
    const submitted = await s.request("/v1/jobs", {
      method: "POST",
      body: s.body({ attach: { server: "secret" } }),
    });
    assert.equal(submitted.status, 202, await submitted.clone().text());
    const job = await waitFor(s.request, (await submitted.json()).id);
    assert.equal(job.state, "attach_failed");
    assert.match(
      JSON.stringify(job),
      /http:\/\/\*\*\*@127\.0\.0\.1/,
      "the error names the server, without its password",
    );
    const attach = await s.request("/v1/adapters/demo/attach", {
      method: "POST",
      body: '{"server":"secret"}',
    });
    assert.equal(attach.status, 502);
    const seen: Record<string, string> = { attach: await attach.text() };
    for (const path of ["/v1/servers", "/v1/adapters", "/metrics", "/v1/jobs", `/v1/jobs/${job.id}`]) {
      seen[path] = await (await s.request(path)).text();
    }
    assert.match(seen["/v1/servers"], /"url":"http:\/\/\*\*\*@127\.0\.0\.1:\d+"/);
    for (const [where, text] of Object.entries(seen)) assert.doesNotMatch(text, /PASSWORD/, where);
  } finally {
    await s.close();
  }
  for (const file of ["jobs.sqlite", "jobs.sqlite-wal"]) {
    const bytes = await Deno.readFile(join(s.dir, "state", file)).catch(() => new Uint8Array());
    assert.doesNotMatch(new TextDecoder().decode(bytes), /PASSWORD/, file);
  }
});

Deno.test("the data directory is 0700 and its database 0600, also when they existed with wider modes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexora-modes-" });
  const state = join(dir, "state");
  await Deno.mkdir(state, { mode: 0o755 });
  await Deno.chmod(state, 0o755);
  await Deno.writeTextFile(join(state, "token"), "x".repeat(32) + "\n", { mode: 0o644 });
  const s = await testSidecar({ dataDir: state });
  try {
    const submitted = await s.request("/v1/jobs", { method: "POST", body: s.body() });
    await waitFor(s.request, (await submitted.json()).id);
    const mode = async (name: string) => ((await Deno.stat(join(state, name))).mode ?? 0) & 0o777;
    assert.equal(await mode("."), 0o700);
    for (const file of ["jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", "token"]) {
      assert.equal((await mode(file)).toString(8), "600", file);
    }
  } finally {
    await s.close();
  }
});

Deno.test("a loopback sidecar answers only to its own names in Host (DNS rebinding), plus --allowed-host ones", async () => {
  const s = await testSidecar({ allowedHosts: ["flexora.internal"] });
  const open = await testSidecar({ host: "0.0.0.0" });
  try {
    const get = (sidecar: typeof s, url: string) =>
      Promise.resolve(sidecar.app.request(url, { headers: { authorization: `Bearer ${TOKEN}` } }));
    for (const ok of ["localhost", "127.0.0.1", "[::1]", "flexora.internal", "LOCALHOST"]) {
      const res = await get(s, `http://${ok}:8321/v1/jobs`);
      assert.equal(res.status, 200, ok);
      await res.body?.cancel();
    }
    const rebound = await get(s, "http://evil.example:8321/v1/jobs");
    assert.equal(rebound.status, 403);
    assert.match(
      (await rebound.json()).error.message,
      /Host 'evil\.example' is not a name this sidecar answers to \(localhost, 127\.0\.0\.1, ::1, flexora\.internal\); add it with --allowed-host/,
    );
    const health = await get(s, "http://evil.example:8321/healthz");
    assert.equal(health.status, 403, "no route is open to another name");
    await health.body?.cancel();
    // Off loopback the token guards every route; Host is not checked unless names are given.
    const far = await get(open, "http://sidecar.example:8321/v1/jobs");
    assert.equal(far.status, 200);
    await far.body?.cancel();
  } finally {
    await s.close();
    await open.close();
  }
});

Deno.test("the sidecar refuses an empty token and a short one off loopback", async () => {
  await assert.rejects(testSidecar({ token: "\n" }), /the configured token holds an empty token/);
  await assert.rejects(
    testSidecar({ token: "a", host: "0.0.0.0" }),
    /a token of 1 characters .*refused on 0\.0\.0\.0/,
  );
});

/** The sidecar's guards: the bearer scheme, the Host check, redaction of server credentials, file modes. */

import assert from "node:assert/strict";
import { HTTPException } from "hono/http-exception";
import { bearerToken, requireRegular } from "../../src/serve/security.ts";
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

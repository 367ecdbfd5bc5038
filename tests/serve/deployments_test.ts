/** Server entries with replicas: accepted shapes, and errors that name the entry, the field and the value. */

import assert from "node:assert/strict";
import { parseServers, replicasOf } from "../../src/serve/deployments.ts";

Deno.test("a server entry names one url or several replicas; each replica is a single-URL server", () => {
  const [one, many] = parseServers([
    { name: "embedded", kind: "embedded", url: "http://127.0.0.1:8322" },
    { name: "vllm-a", kind: "vllm", replicas: ["http://10.0.0.1:8000", "http://10.0.0.2:8000"], token: "t" },
  ]);
  assert.deepEqual(replicasOf(one), [{ name: "embedded", kind: "embedded", url: "http://127.0.0.1:8322" }]);
  assert.equal(many.url, "http://10.0.0.1:8000");
  assert.deepEqual(replicasOf(many).map((r) => [r.name, r.url, r.token, "replicas" in r]), [
    ["vllm-a", "http://10.0.0.1:8000", "t", false],
    ["vllm-a", "http://10.0.0.2:8000", "t", false],
  ]);
});

Deno.test("bad server entries are refused with the entry, field and value", () => {
  const cases: [unknown, RegExp][] = [
    [{}, /expected a JSON array of servers, got object/],
    [
      [{ name: "a", kind: "vllm", url: "http://x", replica: [] }],
      /server 0 \('a'\): 'replica' is not a server field/,
    ],
    [[{ name: "a b", kind: "vllm", url: "http://x" }], /'name' must be 1-64 characters .*, got "a b"/],
    [[{ name: "..", kind: "vllm", url: "http://x" }], /'name' must be 1-64 characters .*, got "\.\."/],
    [[{ name: "a", kind: "tgi", url: "http://x" }], /'kind' must be one of .*, got "tgi"/],
    [[{ name: "a", kind: "vllm" }], /give either 'url' or 'replicas'/],
    [
      [{ name: "a", kind: "vllm", url: "http://x", replicas: ["http://x"] }],
      /give either 'url' or 'replicas'/,
    ],
    [
      [{ name: "a", kind: "vllm", replicas: [] }],
      /'replicas' must be a non-empty list of http\(s\) URLs, got \[\]/,
    ],
    [[{ name: "a", kind: "vllm", replicas: ["http://x", "ftp://y"] }], /'replicas' must be .*"ftp:\/\/y"/],
    [[{ name: "a", kind: "vllm", replicas: ["http://x", "http://x"] }], /http:\/\/x is listed twice/],
    [[{ name: "a", kind: "vllm", url: "x" }], /'url' must be an http\(s\) URL, got "x"/],
    [[{ name: "a", kind: "vllm", url: "http://x", token: 1 }], /'token' must be a string, got 1/],
    [[{ name: "a", kind: "vllm", url: "http://x", options: [] }], /'options' must be an object/],
    [
      [{ name: "a", kind: "vllm", url: "http://x" }, { name: "a", kind: "sglang", url: "http://y" }],
      /server 1 \('a'\): 'name': 'a' is configured twice/,
    ],
  ];
  for (const [json, message] of cases) assert.throws(() => parseServers(json, "--servers s.json"), message);
  assert.throws(
    () => parseServers([{ name: "a", kind: "vllm" }], "--servers s.json"),
    /^Error: --servers s\.json: server 0/,
  );
});

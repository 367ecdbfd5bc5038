/**
 * Bad input to the sidecar: each case must be a 4xx JSON error whose message names the field (or the thing) and
 * never start a job.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { testSidecar } from "./helpers.ts";

const s = await testSidecar();
addEventListener("unload", () => void s.close());
await Deno.symlink("/tmp", join(s.dir, "models", "escape"));
await Deno.mkdir(join(s.dir, "models", "empty"));
// A FIFO nobody writes: reading it would block the job forever.
await new Deno.Command("mkfifo", { args: [join(s.dir, "datasets", "fifo")] }).output();
await Deno.mkdir(join(s.dir, "datasets", "with-fifo"));
await new Deno.Command("mkfifo", { args: [join(s.dir, "datasets", "with-fifo", "train.jsonl")] }).output();

interface Case {
  name: string;
  method?: string;
  path?: string;
  body?: string;
  headers?: Record<string, string>;
  status: number;
  message: RegExp;
  /** The error body's `field`, when the case names one. */
  field?: string;
}

const job = (extra: Record<string, unknown>) => s.body(extra);
const jobBody = () => s.body();
const opts = (options: Record<string, unknown>) => job({ options });
const CASES: Case[] = [
  { name: "malformed JSON", body: "{not json", status: 400, message: /malformed json/i },
  { name: "an array body", body: "[]", status: 400, message: /expected object/i },
  {
    name: "an unknown top-level field",
    body: job({ learning_rate: 1 }),
    status: 400,
    message: /learning_rate/,
  },
  { name: "an unknown option", body: opts({ lr: 1 }), status: 400, message: /'options\.lr'/ },
  {
    name: "an unknown search option",
    body: opts({ search: { lr: 1 } }),
    status: 400,
    message: /Cannot start training: 'search\.lr' /,
    field: "options.search.lr",
  },
  {
    name: "a missing model",
    body: JSON.stringify({ data: join(s.dir, "datasets", "d"), name: "x" }),
    status: 400,
    message: /'model'/,
  },
  {
    name: "a missing data path",
    body: JSON.stringify({ model: join(s.dir, "models", "m"), name: "x" }),
    status: 400,
    message: /'data'/,
  },
  {
    name: "a missing name",
    body: JSON.stringify({ model: join(s.dir, "models", "m"), data: join(s.dir, "datasets", "d") }),
    status: 400,
    message: /'name'/,
  },
  { name: "a name with a slash", body: job({ name: "a/b" }), status: 400, message: /'name'.*A-Z a-z 0-9/ },
  { name: "the name .", body: job({ name: "." }), status: 400, message: /'name'.*got "\."/ },
  { name: "the name ..", body: job({ name: ".." }), status: 400, message: /'name'.*got "\.\."/ },
  { name: "a hidden-file name", body: job({ name: ".x" }), status: 400, message: /'name'/ },
  { name: "a name like an option", body: job({ name: "-rf" }), status: 400, message: /'name'/ },
  {
    name: "an attach name ..",
    body: job({ attach: { server: "local", name: ".." } }),
    status: 400,
    message: /'attach\.name'.*got "\.\."/,
  },
  { name: "a name of 65 characters", body: job({ name: "x".repeat(65) }), status: 400, message: /'name'/ },
  { name: "an empty name", body: job({ name: "" }), status: 400, message: /'name'/ },
  { name: "a model that is a number", body: job({ model: 3 }), status: 400, message: /'model'.*string/i },
  { name: "an unknown method", body: job({ method: "dora" }), status: 400, message: /'method'/ },
  {
    name: "a negative search lr",
    body: opts({ search: { loraLr: -1 } }),
    status: 400,
    message: /Cannot start training: 'search\.loraLr' /,
    field: "options.search.loraLr",
  },
  {
    name: "zero retrain epochs",
    body: opts({ retrain: { epochs: 0 } }),
    status: 400,
    message: /Cannot start training: 'retrain\.epochs' /,
    field: "options.retrain.epochs",
  },
  {
    name: "rank 0",
    body: opts({ retrain: { lora: { rank: 0 } } }),
    status: 400,
    message: /Cannot start training: 'retrain\.lora\.rank' /,
    field: "options.retrain.lora.rank",
  },
  {
    name: "rank 2.5",
    body: opts({ search: { lora: { rank: 2.5 } } }),
    status: 400,
    message: /Cannot start training: 'search\.lora\.rank' /,
    field: "options.search.lora.rank",
  },
  {
    name: "an unknown target module",
    body: opts({ retrain: { lora: { targets: ["qkv"] } } }),
    status: 400,
    message: /Cannot start training: 'retrain\.lora\.targets\.0' /,
    field: "options.retrain.lora.targets.0",
  },
  {
    name: "no target modules",
    body: opts({ retrain: { lora: { targets: [] } } }),
    status: 400,
    message: /Cannot start training: 'retrain\.lora\.targets' /,
    field: "options.retrain.lora.targets",
  },
  {
    name: "a fractional max length",
    body: opts({ maxLength: 10.5 }),
    status: 400,
    message: /Cannot start training: 'maxLength' /,
    field: "options.maxLength",
  },
  {
    name: "a seed that is a string",
    body: opts({ seed: "1" }),
    status: 400,
    message: /Cannot start training: 'seed' must be an integer, got "1"/,
    field: "options.seed",
  },
  {
    name: "an unknown hypergradient",
    body: opts({ search: { hypergradient: "exact" } }),
    status: 400,
    message: /Cannot start training: 'search\.hypergradient' /,
    field: "options.search.hypergradient",
  },
  {
    name: "a warmup ratio of 2",
    body: opts({ retrain: { warmupRatio: 2 } }),
    status: 400,
    message: /Cannot start training: 'retrain\.warmupRatio' /,
    field: "options.retrain.warmupRatio",
  },
  {
    name: "a selection too long",
    body: opts({ select: "x".repeat(100) }),
    status: 400,
    message: /Cannot start training: 'select' /,
    field: "options.select",
  },
  {
    name: "a batch that is not a multiple of the micro-batch",
    body: opts({ retrain: { batchSize: 8, microBatchSize: 3 } }),
    status: 400,
    message: /'retrain\.microBatchSize' must be a divisor of retrain\.batchSize \(8\), got 3/,
    field: "options.retrain.microBatchSize",
  },
  {
    name: "a micro-batch above the batch",
    body: opts({ retrain: { batchSize: 2, microBatchSize: 8 } }),
    status: 400,
    message: /'retrain\.microBatchSize' must be at most retrain\.batchSize \(2\), got 8/,
  },
  {
    name: "a bogus selection rule",
    body: opts({ select: "bogus-rule" }),
    status: 400,
    message:
      /Cannot start training: 'select' must be a rule: positive, top-k:K, validation:K .*, got "bogus-rule"/,
    field: "options.select",
  },
  {
    name: "select top-k:0",
    body: opts({ select: "top-k:0" }),
    status: 400,
    message: /'select' .*got "top-k:0"/,
  },
  {
    name: "select threshold:abc",
    body: opts({ select: "threshold:abc" }),
    status: 400,
    message: /'select' .*got "threshold:abc"/,
  },
  {
    name: "random-k with the default selection",
    body: job({ method: "random-k" }),
    status: 400,
    message: /'select' must be top-k:K with method random-k .*, got "positive"/,
  },
  {
    name: "a validation size past the data",
    body: job({ data: join(s.dir, "datasets", "d", "train.jsonl"), options: { valSize: 64 } }),
    status: 400,
    message: /'valSize' must be less than the 64 training examples .*, got 64/,
    field: "options.valSize",
  },
  { name: "max length 1", body: opts({ maxLength: 1 }), status: 400, message: /'maxLength' .*>= 2, got 1/ },
  {
    name: "rank 1e9 (against the model's widths)",
    body: opts({ retrain: { lora: { rank: 1e9 } } }),
    status: 400,
    message: /'retrain\.lora\.rank' must be at most 16 \(the smallest width .*\), got 1000000000/,
    field: "options.retrain.lora.rank",
  },
  {
    name: "1e9 search epochs",
    body: opts({ search: { epochs: 1e9 } }),
    status: 400,
    message: /'search\.epochs' must be a number in \(0, 1000\], got 1000000000/,
  },
  {
    name: "a model folder that is not a model",
    body: job({ model: join(s.dir, "models", "empty") }),
    status: 400,
    message: /models\/empty\/config\.json: cannot read the model config/,
  },
  {
    name: "a data path that is a FIFO",
    body: job({ data: join(s.dir, "datasets", "fifo") }),
    status: 400,
    message: /'data': ".*\/datasets\/fifo" is a FIFO, not a regular file or folder/,
  },
  {
    name: "a data folder holding a FIFO",
    body: job({ data: join(s.dir, "datasets", "with-fifo") }),
    status: 400,
    message: /'data': ".*\/datasets\/with-fifo\/train\.jsonl" is a FIFO, not a regular file or folder/,
  },
  { name: "padLayers as a string", body: job({ padLayers: "yes" }), status: 400, message: /'padLayers'/ },
  {
    name: "an attach server with a bad name",
    body: job({ attach: { server: "a b" } }),
    status: 400,
    message: /'attach\.server'/,
  },
  {
    name: "an unknown attach field",
    body: job({ attach: { server: "local", url: "x" } }),
    status: 400,
    message: /'attach\.url'/,
  },
  {
    name: "an attach to an unknown server",
    body: job({ attach: { server: "nope" } }),
    status: 404,
    message: /no server 'nope'/,
  },
  {
    name: "a model path with ..",
    body: job({ model: join(s.dir, "models", "..", "..") }),
    status: 400,
    message: /'model'.*(outside the allowed roots|does not exist)/,
  },
  {
    name: "an absolute model path outside the roots",
    body: job({ model: "/etc" }),
    status: 400,
    message: /'model': "\/etc" is outside the allowed roots/,
  },
  {
    name: "a symlink out of the model root",
    body: job({ model: join(s.dir, "models", "escape") }),
    status: 400,
    message: /'model': ".*\/models\/escape" is outside the allowed roots/,
  },
  {
    name: "a model that does not exist",
    body: job({ model: join(s.dir, "models", "missing") }),
    status: 400,
    message: /'model': ".*\/models\/missing" does not exist/,
  },
  {
    name: "a data path outside the roots",
    body: job({ data: "/etc" }),
    status: 400,
    message: /'data': "\/etc" is outside the allowed roots/,
  },
  {
    name: "a body over the size limit",
    body: job({ pad: "x".repeat(2 << 20) }),
    status: 413,
    message: /larger than 1048576 bytes/,
  },
  {
    name: "a text/plain body",
    body: jobBody(),
    headers: { "content-type": "text/plain" },
    status: 415,
    message: /must be JSON, sent with Content-Type: application\/json \(got Content-Type: text\/plain\)/,
  },
  { name: "no token", body: jobBody(), headers: { authorization: "" }, status: 401, message: /bearer token/ },
  {
    name: "a wrong token",
    body: jobBody(),
    headers: { authorization: "Bearer nope" },
    status: 401,
    message: /bearer token/,
  },
  { name: "an unknown job", method: "GET", path: "/v1/jobs/nope", status: 404, message: /no job 'nope'/ },
  {
    name: "a job id that is too long",
    method: "GET",
    path: `/v1/jobs/${"x".repeat(80)}`,
    status: 400,
    message: /'id'/,
  },
  { name: "cancelling an unknown job", path: "/v1/jobs/nope/cancel", status: 404, message: /no job 'nope'/ },
  { name: "resuming an unknown job", path: "/v1/jobs/nope/resume", status: 404, message: /no job 'nope'/ },
  {
    name: "an unknown route",
    method: "GET",
    path: "/v1/nothing",
    status: 404,
    message: /no route GET \/v1\/nothing/,
  },
  {
    name: "attaching an unknown adapter",
    path: "/v1/adapters/ghost/attach",
    body: '{"server":"local"}',
    status: 404,
    message: /no adapter 'ghost'/,
  },
  {
    name: "attaching to an unknown server",
    path: "/v1/adapters/ghost/attach",
    body: '{"server":"far"}',
    status: 404,
    message: /no server 'far'/,
  },
  {
    name: "attaching without a server",
    path: "/v1/adapters/ghost/attach",
    body: "{}",
    status: 400,
    message: /'server'/,
  },
  {
    name: "an adapter name with a space",
    path: "/v1/adapters/a%20b/attach",
    body: '{"server":"local"}',
    status: 400,
    message: /'name'/,
  },
  {
    name: "a hidden-file adapter name in the path",
    path: "/v1/adapters/.x/attach",
    body: '{"server":"local"}',
    status: 400,
    message: /'name'/,
  },
  {
    name: "detaching from an unknown server",
    path: "/v1/adapters/ghost/detach",
    body: '{"server":"far"}',
    status: 404,
    message: /no server 'far'/,
  },
];

for (const c of CASES) {
  Deno.test(`bad input: ${c.name} → ${c.status}`, async () => {
    const before = (await (await s.request("/v1/jobs")).json()).jobs.length;
    const res = await s.request(c.path ?? "/v1/jobs", {
      method: c.method ?? "POST",
      body: c.body,
      headers: c.headers,
    });
    assert.equal(res.status, c.status);
    const body = await res.json();
    assert.equal(typeof body.error?.message, "string", JSON.stringify(body));
    assert.match(body.error.message, c.message);
    if (c.field) assert.equal(body.error.field, c.field);
    assert.equal((await (await s.request("/v1/jobs")).json()).jobs.length, before, "no job may be created");
  });
}

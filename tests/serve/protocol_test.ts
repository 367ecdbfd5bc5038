import assert from "node:assert/strict";
import { join } from "node:path";
import {
  decodeEvent,
  encodeEvent,
  ProtocolError,
  readEvents,
  readSpec,
  type RunnerEvent,
  type RunnerSpec,
  writeSpec,
} from "../../src/serve/protocol.ts";

const EVENTS: RunnerEvent[] = [
  { type: "start", stage: "retrain", step: 5, total: 8, seconds: 12.5 },
  {
    type: "progress",
    event: {
      stage: "search",
      step: 1,
      total: 2,
      loss: 2.5,
      valLoss: 2.6,
      gates: [1.2, 0.8],
      elapsed: 1,
      eta: 1,
    },
  },
  {
    type: "progress",
    event: { stage: "export", step: 0, total: 1, elapsed: 0, eta: 0, message: "writing out" },
  },
  { type: "warning", message: "maxLength 64: 2 examples truncated" },
  {
    type: "result",
    summary: {
      method: "flexora",
      adapter: "/a",
      selectedLayers: [0, 2],
      trainableParams: 96,
      timings: { search: 1 },
    },
  },
  { type: "stopped", message: "search stopped at step 1 of 2" },
  { type: "error", name: "DivergedError", message: "search: training diverged at step 1" },
];

Deno.test("every runner event and the spec survive their writer and reader unchanged", async () => {
  for (const e of EVENTS) assert.deepEqual(decodeEvent(encodeEvent(e)), e);
  const stream = new Blob(EVENTS.map(encodeEvent)).stream() as ReadableStream<Uint8Array<ArrayBuffer>>;
  assert.deepEqual(await Array.fromAsync(readEvents(stream)), EVENTS);
  const dir = await Deno.makeTempDir();
  try {
    const spec: RunnerSpec = {
      model: "/m",
      data: "/d",
      options: { retrain: { epochs: 2 } },
      out: "/o",
      checkpointDir: "/c",
      resume: true,
      device: "cpu",
    };
    await writeSpec(join(dir, "spec.json"), spec);
    assert.deepEqual(await readSpec(join(dir, "spec.json")), spec);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a line or spec off the protocol is an error naming the field and the value", async () => {
  const bad = (line: string, pattern: RegExp) =>
    assert.throws(() => decodeEvent(line), (e) => e instanceof ProtocolError && pattern.test(e.message));
  bad(
    `{"type":"progress","event":{"stage":"search","step":"x","total":2,"elapsed":0,"eta":0}}`,
    /'event\.step' .*got "x"/,
  );
  bad(`{"type":"progres","event":{}}`, /'type' .*got "progres"/);
  bad(`{"type":"warning"}`, /'message' .*got nothing/);
  bad(`{"type":"start","stage":"search","step":0,"total":1,"seconds":0,"extra":1}`, /extra/);
  bad(`not json`, /not JSON/);
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "spec.json");
    await Deno.writeTextFile(
      file,
      JSON.stringify({ model: "/m", data: "/d", options: {}, out: "/o", resume: false }),
    );
    await assert.rejects(readSpec(file), new RegExp(`runner spec ${file}: 'checkpointDir' .*got nothing`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the writers refuse what the readers would refuse, naming the field", async () => {
  assert.throws(
    () =>
      encodeEvent({
        type: "progress",
        event: { stage: "search", step: 1, total: 2, loss: NaN, elapsed: 0, eta: 0 },
      }),
    (e) =>
      e instanceof ProtocolError &&
      /runner event progress: 'event\.loss' .*got NaN$/.test(e.message),
  );
  await assert.rejects(
    writeSpec("/nonexistent/spec.json", {
      model: "",
      data: "d",
      options: {},
      out: "o",
      checkpointDir: "c",
      resume: false,
    }),
    /runner spec \/nonexistent\/spec\.json: 'model' /,
  );
});

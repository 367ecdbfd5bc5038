/**
 * The vLLM-style plugin's conformance suite against the REAL embedded inference server (the project's own engine
 * serving the tiny fixture model), behind a thin handler that records requests and can inject 500s.
 */

import { join } from "node:path";
import { loadModel } from "../../src/model/model.ts";
import { createEmbeddedApp } from "../../src/serve/embedded/app.ts";
import { ROOT } from "../model/shared.ts";
import { conformance } from "./conformance.ts";
import { adapterIdentity, type FakeServer } from "./fakes/common.ts";

const model = await loadModel(join(ROOT, "fixtures/tiny-llama"));

function startEmbedded(): Promise<FakeServer> {
  const embedded = createEmbeddedApp({ model, servedName: "tiny-llama" });
  const requests: string[] = [];
  let failing = 0;
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    requests.push(`${req.method} ${new URL(req.url).pathname}`);
    if (failing > 0) {
      failing--;
      const body = { error: { message: "injected failure", type: "InternalServerError", code: 500 } };
      return Response.json(body, { status: 500 });
    }
    return embedded.app.fetch(req);
  });
  return Promise.resolve({
    server: {
      name: "embedded-real",
      kind: "embedded",
      url: `http://127.0.0.1:${http.addr.port}`,
      baseModel: model.dir,
    },
    requests,
    failNext: (n) => (failing = n),
    async serving(name) {
      const { data } = await (await embedded.app.request("/v1/models")).json();
      const entry = (data as { id: string; root: string; parent: string | null }[]).find((m) =>
        m.id === name && m.parent
      );
      return entry ? await adapterIdentity(entry.root) : null;
    },
    async close() {
      await http.shutdown();
      await embedded.close();
    },
  });
}

conformance("embedded", startEmbedded);

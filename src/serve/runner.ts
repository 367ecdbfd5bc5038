/**
 * A training job in a child process of the sidecar. Reads its spec (a file named on the command line), runs the
 * pipeline, and writes its events on stdout, both through {@link ./protocol.ts}. A line `stop` on stdin, stdin
 * closing or stdout closing (the sidecar died) stops the run between steps with its state checkpointed, and the
 * runner exits cleanly.
 *
 * A child process rather than a Worker: a native crash in onnxruntime then ends this job, not the sidecar.
 *
 * @module
 */

import { eta, finetune, StoppedError, summary } from "../flexora/mod.ts";
import { modelDir } from "../hub/source.ts";
import { loadModel } from "../model/model.ts";
import { resolveDevice } from "../runtime/device.ts";
import { formatPlacement } from "../runtime/placement.ts";
import { encodeEvent, readSpec, type RunnerEvent } from "./protocol.ts";

/**
 * Writes events to stdout while the sidecar reads them. A write that fails (the pipe closed: the sidecar died) is
 * the same news as stdin closing: the run is asked to stop, which checkpoints it, and later events are dropped.
 */
function emitter(controller: AbortController): (e: RunnerEvent) => void {
  let open = true;
  return (e) => {
    if (!open) return;
    const bytes = new TextEncoder().encode(encodeEvent(e)); // an event off the protocol is this run's error
    try {
      for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
    } catch {
      open = false;
      controller.abort();
    }
  };
}

/**
 * The model's folder: `model` itself, or a Hub id's snapshot, downloaded here with `download` events (bytes of
 * the current file, at most four a second): the job's `downloading` state.
 */
async function download(model: string, emit: (e: RunnerEvent) => void, signal: AbortSignal): Promise<string> {
  const started = performance.now();
  let last = 0;
  return await modelDir(model, {
    signal,
    onWarning: (message) => emit({ type: "warning", message }),
    onProgress: (p) => {
      const now = performance.now();
      if (now - last < 250 && p.received < p.total) return;
      last = now;
      const elapsed = (now - started) / 1000;
      emit({
        type: "download",
        file: p.file,
        received: p.received,
        total: p.total,
        elapsed,
        eta: eta(elapsed, p.received, p.total),
      });
    },
  });
}

async function watchStdin(controller: AbortController): Promise<void> {
  const decoder = new TextDecoder();
  try {
    for await (const chunk of Deno.stdin.readable) {
      if (decoder.decode(chunk).includes("stop")) controller.abort();
    }
  } finally {
    controller.abort(); // stdin closed: the sidecar is gone
  }
}

if (import.meta.main) {
  const controller = new AbortController();
  const emit = emitter(controller);
  try {
    const spec = await readSpec(Deno.args[0]);
    watchStdin(controller);
    // The device's choice is logged on stderr, which the sidecar's own stderr carries.
    const { providers } = await resolveDevice(spec.device ?? "cpu", (line) => console.error(line));
    const model = await loadModel(await download(spec.model, emit, controller.signal), {
      dtype: spec.options.dtype,
      providers,
      onPlacement: providers[0] === "cpu" ? undefined : (p) => console.error(formatPlacement(p)),
    });
    const result = await finetune(model, spec.data, spec.options, {
      out: spec.out,
      checkpointDir: spec.checkpointDir,
      resume: spec.resume,
      padLayers: spec.padLayers,
      signal: controller.signal,
      onStart: (start) => emit({ type: "start", ...start }),
      onProgress: (event) => emit({ type: "progress", event }),
      onCheckpoint: (saved) => emit({ type: "checkpoint", ...saved }),
      onWarning: (message) => emit({ type: "warning", message }),
    });
    emit({ type: "result", summary: summary(result) });
    Deno.exit(0);
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    emit(
      e instanceof StoppedError
        ? { type: "stopped", message: err.message }
        : { type: "error", name: err.name, message: err.message },
    );
    Deno.exit(e instanceof StoppedError ? 3 : 1);
  }
}

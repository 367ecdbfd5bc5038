#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (also runs, slowly, on lavapipe): the parity suite
# (tests/model/webgpu_*_test.ts) on WebGPU and, when onnxruntime-node's CUDA provider is installed, on CUDA; then
# the train-step bench (seeded ~100M Llama, batch 8 × 256, LoRA on all layers and on the top 3, float32 and
# float16, state on the device) per available device, with tokens/s and device memory; one summary table.
#
# Needs nothing from the network: Deno from npm's cache (npx), the project's node_modules, the fixtures and
# ../shared. Each stage has a time limit so the whole stays under 8 minutes. See docs/devices.md.
#
# Usage: bench/gpu.sh [--steps N] (default 5 timed steps per variant)
set -uo pipefail
cd "$(dirname "$0")/.."
export NO_COLOR=1
steps=5
if [ "${1:-}" = "--steps" ]; then steps=$2; fi
deno=(npx -y deno@2.9.6)
deadline=$((SECONDS + 470)) # 8 minutes, less what the summary and the start take
limit() { # the smaller of $1 seconds and what is left before the deadline (at least 1)
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 1 ]; then left=1; fi
  if [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows=()

available() { # device → 0 when it opens a session here (the reason on stderr otherwise)
  "${deno[@]}" eval "import { resolveDevice } from './src/runtime/device.ts';
    await resolveDevice('$1').then(() => Deno.exit(0), (e) => (console.error(e.message), Deno.exit(1)));"
}

# Without an NVIDIA GPU, WebGPU runs on lavapipe when tools/lavapipe.sh put it in .lavapipe/.
if ! command -v nvidia-smi >/dev/null 2>&1 && [ -z "${VK_ICD_FILENAMES:-}" ] && [ -f .lavapipe/lvp_icd.json ]; then
  export VK_ICD_FILENAMES=$PWD/.lavapipe/lvp_icd.json
fi
devices=()
for d in webgpu cuda; do
  if available "$d" 2>"$work/$d.why"; then devices+=("$d"); else rows+=("$d|unavailable: $(tail -1 "$work/$d.why" | head -c 200)"); fi
done
if command -v nvidia-smi >/dev/null 2>&1; then
  rows+=("gpu|$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)")
else
  rows+=("gpu|no nvidia-smi: no NVIDIA GPU here; WebGPU figures come from whatever adapter Dawn found")
fi

# 1. Parity: every graph against the CPU provider, with the placement assertion.
for d in "${devices[@]}"; do
  FLEXORA_PARITY_DEVICE=$d timeout "$(limit 200)" "${deno[@]}" test -A tests/model/webgpu_*_test.ts >"$work/parity-$d.log" 2>&1
  rows+=("parity $d|$(grep -E '^(ok|FAILED) \|' "$work/parity-$d.log" | tail -1 || echo "no result (timeout?)")")
done

# 2. Train-step bench, one process per variant; nvidia-smi samples the GPU's memory beside it.
timeout "$(limit 60)" "${deno[@]}" run -A bench/gpu.ts --write-model "$work/llama100m" >/dev/null
for d in "${devices[@]}"; do
  for dtype in float32 float16; do
    for layers in all top3; do
      smi=""
      if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$work/smi" 2>/dev/null &
        smi=$!
      fi
      line=$(timeout "$(limit 45)" "${deno[@]}" run -A bench/gpu.ts --model "$work/llama100m" --device "$d" --dtype "$dtype" \
        --layers "$layers" --steps "$steps" 2>"$work/bench.err" | tail -1)
      mem="n/a"
      if [ -n "$smi" ]; then
        kill "$smi" 2>/dev/null
        wait "$smi" 2>/dev/null
        mem="$(sort -n "$work/smi" | tail -1) MiB"
      fi
      if [ -z "$line" ]; then line="failed: $(tail -c 200 "$work/bench.err" | tr '\n' ' ')"; fi
      rows+=("bench $d $dtype $layers|$line; GPU memory peak $mem")
    done
  done
done

echo
echo "== bench/gpu.sh summary ($(date -u +%FT%TZ), steps $steps) =="
for r in "${rows[@]}"; do printf '%-28s %s\n' "${r%%|*}" "${r#*|}"; done

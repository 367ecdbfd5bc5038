#!/usr/bin/env bash
# Makes a WebGPU adapter available on a machine without a GPU: Mesa's lavapipe (a Vulkan driver that runs on the
# CPU) for onnxruntime-node's WebGPU provider (Dawn on Vulkan).
#
# Dawn needs a Vulkan driver with the "shaderSampledImageArrayDynamicIndexing" and
# "shaderStorageImageArrayDynamicIndexing" features; lavapipe reports them from Mesa 23 on. Debian 12's own Mesa
# (22.3) lacks them, so Dawn finds "No supported adapters"; there this script installs the system Mesa for its
# libraries (and the Vulkan loader), then extracts lavapipe alone from bookworm-backports' Mesa (25.0) into
# DIR (default .lavapipe/ in the project) without touching the system's driver, and prints the line that points
# the Vulkan loader at it. Where the system Mesa is recent enough, it prints nothing to export.
#
# Usage: tools/lavapipe.sh [DIR]; then `export VK_ICD_FILENAMES=DIR/lvp_icd.json` when it says so.
set -euo pipefail
dir=$(realpath -m "${1:-$(dirname "$0")/../.lavapipe}")
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

if ! dpkg-query -W -f='${Status}' mesa-vulkan-drivers libvulkan1 2>/dev/null | grep -q "^install ok installed"; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
mesa=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)
if dpkg --compare-versions "$mesa" ge 23; then
  echo "lavapipe: the system's Mesa $mesa is recent enough" >&2
  exit 0
fi

if [ ! -f "$dir/lvp_icd.json" ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || { echo "lavapipe: cannot tell the Debian release (no VERSION_CODENAME)" >&2; exit 1; }
  # A private apt state (sources, lists, cache) so the system's sources stay as they are.
  apt=$(mktemp -d)
  trap 'rm -rf "$apt"' EXIT
  mkdir -p "$apt/lists/partial" "$apt/archives/partial"
  # The backports suite from the mirror the system already uses (deb822 or one-line sources).
  mirror=$({ cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } |
    sed -nE 's/^URIs: *//p; s/^deb +(\[[^]]*\] +)?//p' | awk '$1 !~ /security|updates/ && !m {m = $1} END {print m}')
  [ -n "$mirror" ] || { echo "lavapipe: no Debian mirror in the system's apt sources" >&2; exit 1; }
  echo "deb $mirror $codename-backports main" >"$apt/sources.list"
  opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::archives=$apt/archives" -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" update -qq
  version=$(apt-cache "${opts[@]}" madison mesa-vulkan-drivers | awk -F' *[|] *' '/backports/ {print $2; exit}')
  [ -n "$version" ] || { echo "lavapipe: no mesa-vulkan-drivers in $codename-backports" >&2; exit 1; }
  (cd "$apt" && apt-get "${opts[@]}" download -qq "mesa-vulkan-drivers=$version")
  dpkg-deb -x "$apt"/mesa-vulkan-drivers_*.deb "$apt/x"
  mkdir -p "$dir"
  cp "$apt"/x/usr/lib/*/libvulkan_lvp.so "$dir/"
  # The loader resolves a library path with a slash relative to the manifest's folder.
  sed -E 's#"library_path": *"[^"]*"#"library_path": "./libvulkan_lvp.so"#' \
    "$apt"/x/usr/share/vulkan/icd.d/lvp_icd*.json >"$dir/lvp_icd.json"
  echo "lavapipe: Mesa $version's lavapipe in $dir" >&2
fi
echo "export VK_ICD_FILENAMES=$dir/lvp_icd.json"

#!/usr/bin/env bash
# Runs the parity suite of the component and pipeline crates on another burn backend:
#   scripts/test-backend.sh wgpu|vulkan|cuda|metal [extra cargo test arguments]
# The tests are the same as on the CPU (kandinsky_testing::test_device picks the
# device from BURN_DEVICE); f32 bounds widen by kandinsky_testing::GPU_FACTOR off the CPU.
# On a machine without a GPU, wgpu and vulkan run on Mesa's software Vulkan driver (lavapipe),
# which this script installs on Debian/Ubuntu when missing. Both pass the whole suite there;
# `vulkan` (cubecl's own SPIR-V) needs the patched cubecl-spirv of patches/ (the workspace
# applies it), without which it crashes lavapipe on the first kernel with shared memory.
set -euo pipefail
backend="${1:-vulkan}"
shift || true
cd "$(dirname "$0")/.."

case "$backend" in
  wgpu | vulkan)
    if ! ls /usr/share/vulkan/icd.d/*.json > /dev/null 2>&1; then
      if command -v apt-get > /dev/null; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1
      else
        echo "no Vulkan driver found: install Mesa's (lavapipe) or a GPU driver" >&2
        exit 1
      fi
    fi
    # wgpu looks for a runtime dir; lavapipe needs none, but silence its complaint.
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
    ;;
  cuda | metal) ;;
  *)
    echo "usage: $0 wgpu|vulkan|cuda|metal [cargo test arguments]" >&2
    exit 2
    ;;
esac

export BURN_DEVICE="$backend"
start=$(date +%s)
cargo test --release \
  -p kandinsky-common -p kandinsky-movq -p kandinsky-unet -p kandinsky-prior \
  -p kandinsky-clip -p kandinsky-pipeline \
  --features "burn/$backend,burn/fusion,burn/autotune" "$@"
echo "parity suite on $backend: $(( $(date +%s) - start )) s"

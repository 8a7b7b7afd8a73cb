#!/usr/bin/env bash
# The prepared GPU check (issue 8), in two steps:
#
#   scripts/gpu-check.sh build   # on a build machine with Rust: binaries + diffusers wheel
#                                # into gpu-artifacts/ (compressed; at most 64 MiB in all)
#   scripts/gpu-check.sh run     # on the GPU machine (CUDA, PyTorch, transformers; no Rust,
#                                # no diffusers), from the repository root, with
#                                # gpu-artifacts/ carried along; results in $OUT
#
# Binaries, per backend: the parity suite (every component's parity test in one test binary,
# crate `kandinsky-parity-suite`) and `gpu_timings` (UNet step, MoVQ decode, whole 2.2
# generation). Backends (BACKENDS, default `cuda`): `cuda`, whose build links LLVM through
# cubecl's bundle, downloaded from GitHub by its build script (LLVM_SYSTEM_PREFIX below where
# GitHub cannot be reached), and `vulkan` (builds anywhere; also passes the whole suite on
# lavapipe, see BENCHMARKS.md). A cuda binary is about 20 MB compressed (LLVM is linked in),
# so `cuda vulkan` together may not fit the 64 MiB a device run carries; the script checks.
# Timings run beside diffusers fp16 on the same GPU in the same run; the table goes to
# $OUT/timings.txt, the parity logs to $OUT/parity-<backend>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ART=gpu-artifacts
BACKENDS="${BACKENDS:-cuda}"

# cubecl-cuda links LLVM (nvptx) from a bundle that tracel-llvm-bundler downloads from GitHub.
# Where GitHub is unreachable, LLVM_SYSTEM_PREFIX=/usr/lib/llvm-22 (Debian bookworm-backports:
# llvm-22-dev, libpolly-22-dev, libzstd-dev) stands in: the bundle's folder gets that LLVM's
# lib/ and include/ and an llvm-config that names system libraries by -l, plus the bundler's
# "installed" marker. LLVM 22 instead of 23: it links, but only a GPU run can vouch for it.
use_system_llvm() {
  local prefix=$1 bundle="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
  [ -f "$bundle/.tracel-llvm-installed" ] && return 0
  mkdir -p "$bundle/bin"
  ln -sfn "$prefix/lib" "$bundle/lib"
  ln -sfn "$prefix/include" "$bundle/include"
  printf '#!/bin/sh\n"%s/bin/llvm-config" "$@" | sed -E %s\n' "$prefix" \
    "'s#/[^ ]*/lib([A-Za-z0-9_+-]+)\\.so#-l\\1#g'" > "$bundle/bin/llvm-config"
  chmod +x "$bundle/bin/llvm-config"
  touch "$bundle/.tracel-llvm-installed"
}

build_backend() {
  local b=$1
  if [ "$b" = cuda ] && [ -n "${LLVM_SYSTEM_PREFIX:-}" ]; then
    use_system_llvm "$LLVM_SYSTEM_PREFIX"
  fi
  cargo test --release --no-run --message-format=json -p kandinsky-parity-suite \
    --features suite,burn/$b,burn/fusion,burn/autotune 2> "$ART/build-$b.log" |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "all":
        print(m["executable"])' > "$ART/suite-$b.path" || return 1
  [ -s "$ART/suite-$b.path" ] || return 1
  # The default `flex` feature stays on so that burn is built with the suite's features (no
  # second build of burn); `bench_device` prefers the GPU backend when it is compiled in.
  cargo build --release -p kandinsky-benches --features "$b" \
    --example gpu_timings 2>> "$ART/build-$b.log" || return 1
  strip -o "$ART/parity-$b" "$(cat "$ART/suite-$b.path")"
  strip -o "$ART/timings-$b" "${CARGO_TARGET_DIR:-target}/release/examples/gpu_timings"
  xz -T0 -6 -f "$ART/parity-$b" "$ART/timings-$b"
  rm "$ART/suite-$b.path" "$ART/build-$b.log"
}

case "${1:-}" in
  build)
    rm -rf "$ART" && mkdir -p "$ART"
    for b in $BACKENDS; do
      if build_backend "$b"; then
        echo "built $b"
      else
        echo "no $b binaries (see $ART/build-$b.log; cuda needs cubecl's LLVM bundle or LLVM_SYSTEM_PREFIX)" >&2
      fi
    done
    pip download --quiet --no-deps -d "$ART" "diffusers==0.42.1"
    du -ch "$ART"/* | tail -1
    size=$(du -sm "$ART" | cut -f1)
    if [ "$size" -gt 64 ]; then
      echo "gpu-artifacts is $size MiB: over the 64 MiB a device run carries" >&2
      exit 1
    fi
    ;;
  run)
    OUT="${OUT:-$ART/out}"
    mkdir -p "$OUT" /tmp/gpu-check
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
    python3 -m pip install --quiet --no-deps "$ART"/diffusers-*.whl
    export KANDINSKY_FIXTURES="$PWD/fixtures"
    backends=""
    for b in cuda vulkan; do
      [ -f "$ART/parity-$b.xz" ] || continue
      xz -dc "$ART/parity-$b.xz" > "/tmp/gpu-check/parity-$b"
      xz -dc "$ART/timings-$b.xz" > "/tmp/gpu-check/timings-$b"
      chmod +x "/tmp/gpu-check/parity-$b" "/tmp/gpu-check/timings-$b"
      backends="$backends $b"
    done
    # 1. Parity suite per backend: f32 tests in one process, each f16/bf16 test in its own.
    for b in $backends; do
      exe="/tmp/gpu-check/parity-$b"
      log="$OUT/parity-$b.log"
      BURN_DEVICE=$b timeout 300 "$exe" --skip f16_device --skip bf16_device --nocapture \
        > "$log" 2>&1 || echo "FAILED f32 suite on $b" | tee -a "$log"
      for t in $("$exe" --list 2> /dev/null | grep -E 'f16_device' | sed 's/: test$//'); do
        BURN_DEVICE=$b timeout 120 "$exe" --exact "$t" --nocapture >> "$log" 2>&1 ||
          echo "FAILED $t on $b" | tee -a "$log"
      done
      grep -E "test result|FAILED|max abs error" "$log" > "$OUT/parity-$b-summary.txt" || true
      grep -E "test result|FAILED" "$log" | sed "s/^/$b: /"
    done
    # 2. A UNet step and a MoVQ decode: diffusers fp16, then ours in f16 and f32.
    {
      for c in unet movq; do
        python3 tools/reference/bench.py "$c" --device cuda --dtype float16 --samples 5
      done
      for b in $backends; do
        for dtype in f16 f32; do
          KANDINSKY_DTYPE=$dtype timeout 300 "/tmp/gpu-check/timings-$b" 5 ||
            echo "FAILED timings on $b $dtype"
        done
      done
    } 2>&1 | tee "$OUT/timings.txt"
    # 3. A whole 2.2 generation (512x512, 25 prior + 50 decoder steps) on real-size
    #    random-weight folders written here (fp32, about 20 GB of disk).
    python3 tools/reference/reference.py --pipeline22-full /tmp/k22 > /dev/null
    python3 - << 'PY' 2>&1 | grep -v Warning | tee -a "$OUT/timings.txt"
import time, torch
from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline
kw = dict(torch_dtype=torch.float16)
prior = KandinskyV22PriorPipeline.from_pretrained("/tmp/k22/kandinsky-2-2-prior", **kw).to("cuda")
dec = KandinskyV22Pipeline.from_pretrained("/tmp/k22/kandinsky-2-2-decoder", **kw).to("cuda")
for run in range(2):
    torch.cuda.synchronize(); t = time.perf_counter()
    e = prior("a red cat sitting on a windowsill", num_inference_steps=25)
    dec(image_embeds=e.image_embeds, negative_image_embeds=e.negative_image_embeds,
        num_inference_steps=50, height=512, width=512)
    torch.cuda.synchronize()
    print(f"diffusers fp16: whole 2.2 generation 512x512, 25 prior + 50 decoder steps (run {run}): {time.perf_counter() - t:.2f} s")
PY
    for b in $backends; do
      KANDINSKY_DTYPE=f16 timeout 400 "/tmp/gpu-check/timings-$b" 1 \
        /tmp/k22/kandinsky-2-2-prior /tmp/k22/kandinsky-2-2-decoder 2>&1 |
        grep whole | tee -a "$OUT/timings.txt" || echo "FAILED generation on $b" | tee -a "$OUT/timings.txt"
    done
    ;;
  *)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac

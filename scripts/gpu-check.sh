#!/usr/bin/env bash
# The prepared GPU check (issue 8), in two steps:
#
#   scripts/gpu-check.sh build   # on a build machine with Rust: binaries + diffusers wheel
#                                # into gpu-artifacts/ (compressed; at most 64 MiB in all)
#   scripts/gpu-check.sh run [parity] [timings] [generation]
#                                # on the GPU machine (CUDA, PyTorch, transformers; no Rust,
#                                # no diffusers), from the repository root, with
#                                # gpu-artifacts/ carried along; results in $OUT. No step
#                                # named: all three, in that order.
#
# One binary per variant: the parity suite (every component's parity test in one test binary,
# crate `kandinsky-parity-suite`), which also holds the timings (UNet step, MoVQ decode, whole
# 2.2 generation: `benches/examples/gpu_timings.rs` as its ignored test `gpu_timings_run`), so
# that the linked-in LLVM travels once. Variants (BACKENDS, default `cuda cuda-nvrtc`):
# - `cuda`: burn's CUDA backend as users get it; cubecl compiles kernels with LLVM's NVPTX back
#   end, linked in from cubecl's LLVM bundle, which its build script downloads from GitHub
#   (LLVM_SYSTEM_PREFIX below where GitHub cannot be reached);
# - `cuda-nvrtc`: the same backend with cubecl's other kernel compiler (CUDA C++ through NVRTC,
#   a CUDA library found at run time; PyTorch's wheels ship it): a second opinion should the
#   LLVM stand-in fail on the GPU;
# - `vulkan` (builds anywhere; also passes the whole suite on lavapipe, see BENCHMARKS.md).
# The script checks that all of gpu-artifacts/ fits the 64 MiB a device run carries.
# Timings run beside diffusers fp16 on the same GPU in the same run; the table goes to
# $OUT/timings.txt, the parity logs to $OUT/parity-<variant>.log, each step's wall time to
# $OUT/steps.txt. Every process has a timeout, but both variants' steps together may pass the
# 10 minutes of one device command: then run `run parity timings` and `run generation` as two
# commands (the machine keeps /tmp between them while warm), or one variant (BACKENDS=cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
ART=gpu-artifacts
BACKENDS="${BACKENDS:-cuda cuda-nvrtc}"

# cubecl-cuda links LLVM (nvptx) from a bundle that tracel-llvm-bundler downloads from GitHub.
# Where GitHub is unreachable, LLVM_SYSTEM_PREFIX=/usr/lib/llvm-22 (Debian bookworm-backports:
# llvm-22-dev, libpolly-22-dev, libzstd-dev) stands in: the bundle's folder gets that LLVM's
# lib/ and include/ and an llvm-config that names system libraries by -l, plus the bundler's
# "installed" marker. LLVM 22 instead of 23: it links, cubecl-llvm's own offline tests pass
# but for three (BENCHMARKS.md, "GPU"), and only a GPU run can vouch for the whole.
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

# cubecl-llvm asks LLVM for the newest PTX version the driver loads (up to 9.3, CUDA 13.3); an
# LLVM that does not know it (LLVM 22 stops at 9.0) ignores the request and falls back to the
# architecture's oldest (7.8 on Hopper), without the instructions newer PTX brings. With the
# stand-in, the `cuda` variant builds against a copy of cubecl-llvm whose driver-to-PTX table
# stops at that LLVM's newest version (passed by `--config patch`; Cargo.lock is restored).
# Prints the `--config` argument.
ptx_capped_cubecl_llvm() {
  local prefix=$1 version src dst newest
  version=$(python3 -c 'import tomllib; print(next(p["version"] for p in tomllib.load(open("Cargo.lock", "rb"))["package"] if p["name"] == "cubecl-llvm"))')
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cubecl-llvm-$version" | head -1)
  mkdir -p "${CARGO_TARGET_DIR:-target}"
  dst="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/cubecl-llvm-$version-ptx-capped"
  newest=$("$prefix/bin/llc" -march=nvptx64 -mattr=help 2>&1 | grep -o 'ptx[0-9]*' | tr -d ptx | sort -n | tail -1)
  rm -rf "$dst" && cp -r "$src" "$dst"
  python3 - "$dst/src/nvptx/ptx_version.rs" "$newest" << 'PY'
import re, sys
path, newest = sys.argv[1], int(sys.argv[2])
text = open(path).read()
capped = re.sub(r"    \((\d+), (\d+)\),\n", lambda m: m.group(0) if int(m.group(2)) <= newest else "", text)
assert capped != text or newest >= 93, "the driver-to-PTX table was not found"
open(path, "w").write(capped)
PY
  echo "patch.crates-io.cubecl-llvm.path=\"$dst\""
}

# Decompresses $1 into $2, with Python's lzma where the GPU machine has no xz.
unxz_to() {
  if command -v xz > /dev/null; then
    xz -dc "$1" > "$2"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
  fi
}

# The burn backend (BURN_DEVICE) of a variant.
device_of() { echo "${1%-nvrtc}"; }

build_backend() {
  local b=$1 config=()
  if [[ "$b" = cuda* ]] && [ -n "${LLVM_SYSTEM_PREFIX:-}" ]; then
    use_system_llvm "$LLVM_SYSTEM_PREFIX"
    [ "$b" = cuda ] && config=(--config "$(ptx_capped_cubecl_llvm "$LLVM_SYSTEM_PREFIX")")
  fi
  cp Cargo.lock "$ART/Cargo.lock.orig"
  # The variant is a feature of the suite (and of kandinsky-benches, whose timings it holds).
  cargo test --release --no-run --message-format=json -p kandinsky-parity-suite \
    "${config[@]}" --features "suite,$b" 2> "$ART/build-$b.log" |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "all":
        print(m["executable"])' > "$ART/suite-$b.path" || true
  mv "$ART/Cargo.lock.orig" Cargo.lock
  [ -s "$ART/suite-$b.path" ] || return 1
  strip -o "$ART/parity-$b" "$(cat "$ART/suite-$b.path")"
  xz -T0 -6 -f "$ART/parity-$b"
  rm "$ART/suite-$b.path" "$ART/build-$b.log"
}

# 1. Parity suite per variant: f32 tests in one process, each f16/bf16 test in its own.
#    Autotune at its least (parity is about the numbers; each process compiles its kernels anew).
run_parity() (
  export CUBECL_AUTOTUNE_LEVEL=minimal
  for b in $backends; do
    local exe="/tmp/gpu-check/parity-$b" log="$OUT/parity-$b.log"
    BURN_DEVICE=$(device_of "$b") timeout 150 "$exe" --skip f16_device --skip bf16_device \
      --nocapture > "$log" 2>&1 || echo "FAILED f32 suite on $b" | tee -a "$log"
    for t in $("$exe" --list 2> /dev/null | grep -E 'f16_device' | sed 's/: test$//'); do
      BURN_DEVICE=$(device_of "$b") timeout 40 "$exe" --exact "$t" --nocapture >> "$log" 2>&1 ||
        echo "FAILED $t on $b" | tee -a "$log"
    done
    grep -E "test result|FAILED|max abs error" "$log" > "$OUT/parity-$b-summary.txt" || true
    grep -E "test result|FAILED" "$log" | sed "s/^/$b: /" || true
  done
)

# 2. A UNet step and a MoVQ decode: diffusers fp16, then ours in f16 and f32.
run_timings() {
  {
    for c in unet movq; do
      timeout 120 python3 tools/reference/bench.py "$c" --device cuda --dtype float16 --samples 5 ||
        echo "FAILED diffusers $c timing"
    done
    for b in $backends; do
      for dtype in f16 f32; do
        local log="$OUT/timings-$b-$dtype.log"
        KANDINSKY_DTYPE=$dtype KANDINSKY_TIMINGS=5 timeout 90 "/tmp/gpu-check/parity-$b" \
          --ignored --exact gpu_timings_run --nocapture > "$log" 2>&1 ||
          echo "FAILED timings on $b $dtype (see ${log##*/})"
        grep "^ours" "$log" | sed "s/^/$b: /" || true
      done
    done
  } 2>&1 | tee -a "$OUT/timings.txt"
}

# 3. A whole 2.2 generation (512x512, 25 prior + 50 decoder steps) on real-size random-weight
#    folders written here (fp32, about 20 GB of disk; kept in /tmp/k22 for a rerun).
run_generation() {
  [ -f /tmp/k22/done ] ||
    { python3 tools/reference/reference.py --pipeline22-full /tmp/k22 > /dev/null && touch /tmp/k22/done; } ||
    echo "FAILED writing the random-weight folders" | tee -a "$OUT/timings.txt"
  timeout 150 python3 - << 'PY' 2>&1 | grep -v Warning | tee -a "$OUT/timings.txt" || echo "FAILED diffusers generation"
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
  # Ours: the first variant that gets through (`cuda` before `cuda-nvrtc`), to fit the time.
  for b in $backends; do
    local log="$OUT/generation-$b.log"
    KANDINSKY_DTYPE=f16 KANDINSKY_TIMINGS="1 /tmp/k22/kandinsky-2-2-prior /tmp/k22/kandinsky-2-2-decoder" \
      timeout 300 "/tmp/gpu-check/parity-$b" --ignored --exact gpu_timings_run --nocapture \
      > "$log" 2>&1 || echo "FAILED generation on $b (see ${log##*/})" | tee -a "$OUT/timings.txt"
    grep whole "$log" | sed "s/^/$b: /" | tee -a "$OUT/timings.txt" && break
  done
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
    shift
    steps="${*:-parity timings generation}"
    OUT="${OUT:-$ART/out}"
    mkdir -p "$OUT" /tmp/gpu-check
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
    python3 -m pip install --quiet --no-deps "$ART"/diffusers-*.whl
    export KANDINSKY_FIXTURES="$PWD/fixtures"
    # What cubecl-cuda reads from a CUDA toolkit at run time: the LLVM compiler (variant `cuda`)
    # links libdevice.10.bc (CUDA_PATH/nvvm/libdevice) into kernels with exp, erf, tanh...; the
    # NVRTC one (`cuda-nvrtc`) loads libnvrtc and includes CUDA_PATH/include. Without a toolkit,
    # a CUDA_PATH is put together from what PyTorch's wheels ship (nvidia/*, triton's libdevice).
    cuda_env=$(python3 - << 'PY'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
find = lambda pattern: [h for r in roots for h in glob.glob(os.path.join(r, pattern), recursive=True)]
libs = glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*") + find("nvidia/**/libnvrtc.so*")
print(":".join(dict.fromkeys(os.path.dirname(h) for h in libs)))
toolkit = os.environ.get("CUDA_PATH") or "/usr/local/cuda"
if os.path.isdir(os.path.join(toolkit, "nvvm", "libdevice")) and os.path.isdir(os.path.join(toolkit, "include")):
    print(toolkit)
else:
    root = "/tmp/gpu-check/cuda"
    os.makedirs(os.path.join(root, "nvvm", "libdevice"), exist_ok=True)
    headers = glob.glob(os.path.join(toolkit, "include", "cuda_fp16.h")) + find("nvidia/**/include/cuda_fp16.h")
    libdevice = (glob.glob(os.path.join(toolkit, "nvvm", "libdevice", "libdevice.10.bc"))
                 + find("nvidia/**/libdevice.10.bc") + find("triton/**/libdevice.10.bc"))
    for target, link in [(headers, "include"), (libdevice, "nvvm/libdevice/libdevice.10.bc")]:
        path = os.path.join(root, link)
        if target and not os.path.lexists(path):
            os.symlink(os.path.dirname(target[0]) if link == "include" else target[0], path)
    print(root)
PY
    )
    nvrtc=$(echo "$cuda_env" | sed -n 1p)
    export LD_LIBRARY_PATH="${nvrtc}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export CUDA_PATH=$(echo "$cuda_env" | sed -n 2p)
    echo "NVRTC folders: ${nvrtc:-none found}; CUDA_PATH: $CUDA_PATH" | tee -a "$OUT/gpu.txt"
    ls -l "$CUDA_PATH" "$CUDA_PATH/nvvm/libdevice" >> "$OUT/gpu.txt" 2>&1 || true
    backends=""
    for b in $BACKENDS; do
      [ -f "$ART/parity-$b.xz" ] || continue
      unxz_to "$ART/parity-$b.xz" "/tmp/gpu-check/parity-$b"
      chmod +x "/tmp/gpu-check/parity-$b"
      backends="$backends $b"
    done
    for step in $steps; do
      start=$(date +%s)
      case "$step" in
        # Called in a `||` list, the steps never stop the script: a failure is logged, the
        # next command runs.
        parity) run_parity || echo "parity step failed" ;;
        timings) run_timings || echo "timings step failed" ;;
        generation) run_generation || echo "generation step failed" ;;
        *) echo "unknown step $step (parity, timings, generation)" >&2; exit 2 ;;
      esac
      echo "$step: $(( $(date +%s) - start )) s" | tee -a "$OUT/steps.txt"
    done
    ;;
  *)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac

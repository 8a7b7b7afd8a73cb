#!/usr/bin/env bash
# The prepared GPU check (issue 8): run on the GPU machine from the repository root, with the
# artefacts this script's `build` step made on a build machine carried along:
#
#   scripts/gpu-check.sh build      # here: CUDA test binaries and benchmark/example binaries
#   scripts/gpu-check.sh run        # there: parity suite on CUDA, then timings beside diffusers
#
# `build` needs the CUDA feature of burn to build (cubecl's LLVM bundle is downloaded by its
# build script, so it needs network access once). `run` needs CUDA, PyTorch and transformers on
# the GPU machine, and the diffusers wheel in gpu-artifacts/ (pip installs it with --no-deps).
# Results go to $OUT (or gpu-artifacts/out): parity log, timings table.
set -euo pipefail
cd "$(dirname "$0")/.."
ART=gpu-artifacts

case "${1:-}" in
  build)
    mkdir -p "$ART/bin"
    # Parity test binaries of every crate, on CUDA.
    cargo test --release --no-run --message-format=json \
      -p kandinsky-movq -p kandinsky-unet -p kandinsky-prior -p kandinsky-clip -p kandinsky-pipeline \
      --features burn/cuda,burn/fusion,burn/autotune 2> /dev/null |
      python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])' > "$ART/tests.txt"
    while read -r exe; do cp "$exe" "$ART/bin/"; done < "$ART/tests.txt"
    # Timing binaries: the UNet/MoVQ benchmarks and the whole-generation example.
    cargo build --release -p kandinsky-benches --no-default-features --features cuda --benches --examples
    cp target/release/examples/text2img "$ART/bin/" 2> /dev/null || true
    find target/release/deps -maxdepth 1 -type f -executable \( -name 'unet-*' -o -name 'movq-*' \) \
      -exec cp {} "$ART/bin/" \;
    pip download --no-deps -d "$ART" "diffusers==0.42.1"
    echo "artefacts in $ART ($(du -sh "$ART" | cut -f1))"
    ;;
  run)
    OUT="${OUT:-$ART/out}"
    mkdir -p "$OUT"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
    pip install --no-deps "$ART"/diffusers-*.whl > /dev/null
    export BURN_DEVICE=cuda
    # 1. Parity suite: each test binary runs from its crate folder (fixtures are relative).
    for exe in "$ART"/bin/*-????????????????; do
      case "$(basename "$exe")" in unet-* | movq-*) continue ;; esac
      echo "== $(basename "$exe")" | tee -a "$OUT/parity.log"
      timeout 300 "$exe" --test-threads 1 --nocapture >> "$OUT/parity.log" 2>&1 ||
        echo "FAILED $(basename "$exe")" | tee -a "$OUT/parity.log"
    done
    grep -E "test result|FAILED" "$OUT/parity.log" | tee "$OUT/parity-summary.txt"
    # 2. Timings beside diffusers fp16 on the same GPU, in the same run: a UNet step (batch 2,
    #    64x64 latent) and a MoVQ decode to 512x512 ...
    for component in unet movq; do
      (cd tools/reference && python3 bench.py "$component" --device cuda --dtype float16 \
        --samples 5) | tee -a "$OUT/timings.txt"
    done
    for b in "$ART"/bin/unet-* "$ART"/bin/movq-*; do
      "$b" --bench 2>&1 | tee -a "$OUT/timings.txt" || true
    done
    # ... and a whole 2.2 generation (512x512, 25 prior + 50 decoder steps) on real-size
    #    random-weight folders written here.
    python3 tools/reference/reference.py --pipeline22-full /tmp/k22 > /dev/null
    python3 - <<'PY' 2>&1 | tee -a "$OUT/timings.txt"
import time, torch
from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline
prior = KandinskyV22PriorPipeline.from_pretrained("/tmp/k22/kandinsky-2-2-prior", torch_dtype=torch.float16).to("cuda")
dec = KandinskyV22Pipeline.from_pretrained("/tmp/k22/kandinsky-2-2-decoder", torch_dtype=torch.float16).to("cuda")
for run in range(2):
    torch.cuda.synchronize(); t = time.perf_counter()
    e = prior("a red cat", num_inference_steps=25)
    dec(image_embeds=e.image_embeds, negative_image_embeds=e.negative_image_embeds, num_inference_steps=50, height=512, width=512)
    torch.cuda.synchronize(); print(f"diffusers fp16 whole 2.2 generation (run {run}): {time.perf_counter() - t:.2f} s")
PY
    for run in 0 1; do
      "$ART/bin/text2img" /tmp/k22/kandinsky-2-2-prior /tmp/k22/kandinsky-2-2-decoder 25 50 512 \
        2>&1 | tee -a "$OUT/timings.txt" || true
    done
    ;;
  *)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac

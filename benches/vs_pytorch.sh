#!/usr/bin/env bash
# One component's benchmark in burn (flex, this crate's divan bench) and the same call in PyTorch
# (diffusers, tools/reference/bench.py), one after the other in one command, then their ratio.
#   benches/vs_pytorch.sh movq   MoVQ decode, 64x64 latent -> 512x512, batch 1
#   benches/vs_pytorch.sh unet   UNet forward at the 2.2 config, batch 2, 64x64 latent
#   benches/vs_pytorch.sh prior  prior forward at the 2.2 config, batch 2
#   benches/vs_pytorch.sh clip   CLIP ViT-bigG/14 text encoder, batch 2 x 77 tokens
# Needs the reference environment (tools/reference/setup.sh). Run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
component="${1:?usage: benches/vs_pytorch.sh movq|unet|prior|clip}"
threads="${THREADS:-$(nproc)}"
# Timed runs of each side after one warm-up: as many as the divan bench's sample_count.
case "$component" in unet) samples=2 ;; *) samples=3 ;; esac
export RAYON_NUM_THREADS="$threads"
log="$(mktemp)"
cargo bench -p kandinsky-benches --bench "$component" 2>&1 | tee "$log"
burn_s=$(python3 - "$log" <<'PY'
import sys
units = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
for line in open(sys.argv[1], encoding="utf-8"):
    cols = [c.strip() for c in line.split("│")]
    if len(cols) > 3 and cols[0].startswith(("╰─", "├─")) and cols[2]:
        value, unit = cols[2].split()  # fastest | slowest | median
        print(float(value) * units[unit])
        break
PY
)
py_line=$(cd tools/reference && .venv/bin/python bench.py "$component" --threads "$threads" --samples "$samples" 2>/dev/null | tail -1)
echo "$py_line"
py_s=$(echo "$py_line" | sed -E 's/.*median ([0-9.]+) s/\1/')
echo "$component: burn flex median ${burn_s} s, pytorch median ${py_s} s, ratio burn/pytorch $(python3 -c "print(f'{$burn_s/$py_s:.2f}')")x ($threads threads)"

#!/usr/bin/env bash
# MoVQ decode (64x64 latent -> 512x512, real config, random weights) in burn (flex, this crate's
# bench) and in PyTorch (diffusers), one after the other, then their ratio.
# Needs the reference environment (tools/reference/setup.sh). Run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${THREADS:-$(nproc)}"
export RAYON_NUM_THREADS="$threads"
log="$(mktemp)"
cargo bench -p kandinsky-benches --bench movq 2>&1 | tee "$log"
burn_s=$(python3 - "$log" <<'PY'
import re, sys
units = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
for line in open(sys.argv[1], encoding="utf-8"):
    if "decode_64x64_to_512x512" in line:
        cols = [c.strip() for c in line.split("│")]
        value, unit = cols[2].split()  # fastest | slowest | median
        print(float(value) * units[unit])
PY
)
py_line=$(cd tools/reference && .venv/bin/python bench_movq.py --threads "$threads" 2>/dev/null | tail -1)
echo "$py_line"
py_s=$(echo "$py_line" | sed -E 's/.*median ([0-9.]+) s/\1/')
echo "burn flex median ${burn_s} s, pytorch median ${py_s} s, ratio burn/pytorch $(python3 -c "print(f'{$burn_s/$py_s:.2f}')")x ($threads threads)"

#!/usr/bin/env bash
# Instruction counts (callgrind's Ir) of one small UNet forward and one small MoVQ decode
# (benches/examples/instructions.rs), on one thread: repeatable on a noisy machine, so a change's
# effect on the CPU kernels shows without a quiet machine. Needs valgrind (apt-get install
# valgrind). Prints one line per call; BENCHMARKS.md keeps the figures.
#   benches/instructions.sh [unet] [movq]
set -euo pipefail
cd "$(dirname "$0")/.."
calls=("$@")
[ ${#calls[@]} -gt 0 ] || calls=(unet movq)
cargo build --release -q -p kandinsky-benches --example instructions
target="${CARGO_TARGET_DIR:-target}"
for call in "${calls[@]}"; do
    log="$(mktemp)"
    RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        --collect-atstart=no --toggle-collect='*instructions::measured*' \
        "$target/release/examples/instructions" "$call" > /dev/null 2> "$log"
    ir=$(sed -nE 's/.*Collected : ([0-9]+).*/\1/p' "$log")
    [ -n "$ir" ] || { cat "$log"; exit 1; }
    printf '%s: %s instructions (%.2f G)\n' "$call" "$ir" "$(python3 -c "print($ir/1e9)")"
    rm -f "$log"
done

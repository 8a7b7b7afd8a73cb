#!/usr/bin/env bash
# Whole 512x512 Kandinsky 2.2 generations on this machine's CPU, in one command: the reference
# default (prior UnCLIP 25 steps, decoder DDPM 100 steps) and the recommended fast setting
# (decoder DPM-Solver++ 2M with Karras sigmas, 25 steps), same prompt and seed, release build,
# flex backend, f32. Prints wall time and peak RSS of each.
#
# Usage: benches/samplers_512.sh PRIOR DECODER [OUT_DIR]
#   PRIOR, DECODER: kandinsky-2-2-prior and kandinsky-2-2-decoder folders (or Hub ids), e.g.
#   the real-size random-weight ones `reference.py --pipeline22-full DIR` writes.
set -euo pipefail
prior=${1:?prior folder}
decoder=${2:?decoder folder}
out=${3:-$(mktemp -d)}
cd "$(dirname "$0")/.."
cargo build --release -p kandinsky-cli --quiet
bin=target/release/kandinsky
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads"
run() {
    local name=$1
    shift
    /usr/bin/time -f "$name: %e s wall, %M KB peak RSS" "$bin" generate --offline --quiet \
        --prompt "a red cat on a windowsill, oil painting" --seed 42 --force \
        --prior "$prior" --decoder "$decoder" --output "$out/$name.png" "$@"
}
run default
run dpm++2m-karras-25 --scheduler dpm++2m --karras --steps 25

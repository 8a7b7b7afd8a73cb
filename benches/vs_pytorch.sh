#!/usr/bin/env bash
# One component's benchmark in burn (flex, this crate's divan bench) and the same call in PyTorch
# (diffusers, tools/reference/bench.py), one after the other in one command, then their ratio.
#   benches/vs_pytorch.sh movq   MoVQ decode, 64x64 latent -> 512x512, batch 1
#   benches/vs_pytorch.sh unet   UNet forward at the 2.2 config, batch 2, 64x64 latent
#   benches/vs_pytorch.sh prior  prior forward at the 2.2 config, batch 2
#   benches/vs_pytorch.sh clip   CLIP ViT-bigG/14 text encoder, batch 2 x 77 tokens
#   benches/vs_pytorch.sh whole PRIOR_DIR DECODER_DIR [PRIOR_STEPS DECODER_STEPS SIZE]
#                                a whole 2.2 text-to-image generation, loading included (25 + 25
#                                steps at 512² by default), wall time and peak RSS of each side;
#                                the folders: tools/reference/reference.py --pipeline22-full DIR
# Needs the reference environment (tools/reference/setup.sh). Run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
component="${1:?usage: benches/vs_pytorch.sh movq|unet|prior|clip|whole}"
threads="${THREADS:-$(nproc)}"
if [ "$component" = whole ]; then
    prior="${2:?usage: benches/vs_pytorch.sh whole PRIOR_DIR DECODER_DIR [PRIOR_STEPS DECODER_STEPS SIZE]}"
    decoder="${3:?usage: benches/vs_pytorch.sh whole PRIOR_DIR DECODER_DIR [PRIOR_STEPS DECODER_STEPS SIZE]}"
    prior_steps="${4:-25}" steps="${5:-25}" size="${6:-512}"
    prior="$(realpath "$prior")" decoder="$(realpath "$decoder")"
    export RAYON_NUM_THREADS="$threads"
    cargo build --release -p kandinsky-benches --example text2img
    # The same page cache for both sides: each starts right after reading every weight file
    # (as much of the 18.4 GB as the machine caches), not after the other side's run.
    warm() { find "$prior" "$decoder" -name '*.safetensors' -exec cat {} + > /dev/null; }
    warm
    ours=$(cargo run --release -q -p kandinsky-benches --example text2img -- \
        "$prior" "$decoder" "$prior_steps" "$steps" "$size" | tail -1)
    echo "$ours"
    warm
    phases="$(mktemp)"
    theirs=$(cd tools/reference && .venv/bin/python bench.py whole --threads "$threads" \
        --prior "$prior" --decoder "$decoder" --prior-steps "$prior_steps" --steps "$steps" \
        --size "$size" 2>"$phases" | tail -1)
    grep '^  ' "$phases" >&2 || true
    echo "$theirs"
    python3 - "$ours" "$theirs" "$threads" <<'PY'
import re, sys
ours, theirs, threads = sys.argv[1:]
def parse(line):
    return (float(re.search(r"in ([0-9.]+) s", line).group(1)),
            float(re.search(r"peak RSS ([0-9.]+) GB", line).group(1)))
(t_o, m_o), (t_p, m_p) = parse(ours), parse(theirs)
print(f"whole: burn flex {t_o:.1f} s, peak {m_o:.2f} GB; pytorch {t_p:.1f} s, peak {m_p:.2f} GB; "
      f"ratio time {t_o / t_p:.2f}x, memory {m_o / m_p:.2f}x ({threads} threads)")
PY
    exit 0
fi
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

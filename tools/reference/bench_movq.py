#!/usr/bin/env python3
"""PyTorch timing of the call benches/benches/movq.rs measures: diffusers VQModel at the real
Kandinsky MoVQ config (random weights), decode of a (1, 4, 64, 64) latent with
force_not_quantize=True, float32 on CPU. Prints the median of N timed runs after one warm-up."""

import argparse
import statistics
import time

import torch
from diffusers import VQModel

from reference import MOVQ_REAL_CONFIG

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--samples", type=int, default=3)
args = parser.parse_args()

torch.set_num_threads(args.threads)
torch.manual_seed(0)
model = VQModel(**{k: v for k, v in MOVQ_REAL_CONFIG.items() if not k.startswith("_")}).eval()
latents = torch.randn(1, 4, 64, 64)
times = []
with torch.inference_mode():
    model.decode(latents, force_not_quantize=True)
    for _ in range(args.samples):
        start = time.perf_counter()
        model.decode(latents, force_not_quantize=True)
        times.append(time.perf_counter() - start)
print(f"pytorch {torch.__version__} threads {args.threads}: samples "
      + ", ".join(f"{t:.2f}" for t in times) + f" s; median {statistics.median(times):.2f} s")

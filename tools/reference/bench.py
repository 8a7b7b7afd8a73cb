#!/usr/bin/env python3
"""PyTorch timings of the calls the Rust benchmarks (benches/benches/*.rs) measure, at the real
configs with random weights, float32 on CPU. Prints the median of N timed runs after one
warm-up.

  movq: diffusers VQModel, decode of a (1, 4, 64, 64) latent with force_not_quantize=True.
  unet: diffusers UNet2DConditionModel at the Kandinsky 2.2 decoder config, one forward of a
        (2, 4, 64, 64) latent (batch 2 = classifier-free guidance) at timestep 999 with
        (2, 1280) image embeddings.
"""

import argparse
import statistics
import time

import torch

from reference import MOVQ_REAL_CONFIG, UNET_REAL_BASE, UNET_V22, unet_config

parser = argparse.ArgumentParser()
parser.add_argument("component", choices=["movq", "unet"])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--samples", type=int, default=3)
args = parser.parse_args()

torch.set_num_threads(args.threads)
torch.manual_seed(0)
if args.component == "movq":
    from diffusers import VQModel

    model = VQModel(**{k: v for k, v in MOVQ_REAL_CONFIG.items() if not k.startswith("_")}).eval()
    latents = torch.randn(1, 4, 64, 64)

    def call():
        model.decode(latents, force_not_quantize=True)
else:
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel(**unet_config({**UNET_REAL_BASE, **UNET_V22, "in_channels": 4}))
    model = model.eval()
    latents = torch.randn(2, 4, 64, 64)
    image_embeds = torch.randn(2, 1280)
    timestep = torch.tensor([999.0])

    def call():
        model(latents, timestep, encoder_hidden_states=None,
              added_cond_kwargs={"image_embeds": image_embeds})

times = []
with torch.inference_mode():
    call()
    for _ in range(args.samples):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
print(f"pytorch {torch.__version__} threads {args.threads}: samples "
      + ", ".join(f"{t:.2f}" for t in times) + f" s; median {statistics.median(times):.2f} s")

#!/usr/bin/env python3
"""PyTorch timings of the calls the Rust benchmarks (benches/benches/*.rs) measure, at the real
configs with random weights, float32 on CPU by default (--device cuda --dtype float16 for the GPU
check). Prints the median of N timed runs after one warm-up.

  movq: diffusers VQModel, decode of a (1, 4, 64, 64) latent with force_not_quantize=True.
  unet: diffusers UNet2DConditionModel at the Kandinsky 2.2 decoder config, one forward of a
        (2, 4, 64, 64) latent (batch 2 = classifier-free guidance) at timestep 999 with
        (2, 1280) image embeddings.
  prior: diffusers PriorTransformer at the Kandinsky 2.2 prior config, one forward at batch 2,
        timestep 999, 77 text tokens of which the first 12 are unmasked.
  clip: transformers CLIPTextModelWithProjection at the ViT-bigG/14 text config (the 2.2 prior's
        text encoder), batch 2 x 77 tokens (SOT, 10 tokens, EOT, EOT padding).
  whole: a whole 2.2 text-to-image generation from the prior and decoder folders given
        (--prior, --decoder: e.g. the real-size random folders of reference.py
        --pipeline22-full), loading included: KandinskyV22PriorPipeline (its image encoder too,
        for the zero-image negative), freed, then KandinskyV22Pipeline, as the Rust side's
        sequential residency does; one run, its wall time and the process's peak RSS.
"""

import argparse
import statistics
import sys
import time

import torch

from reference import CLIP_TEXT_G, MOVQ_REAL_CONFIG, PRIOR_REAL_22, UNET_REAL_BASE, UNET_V22, unet_config

parser = argparse.ArgumentParser()
parser.add_argument("component", choices=["movq", "unet", "prior", "clip", "whole"])
parser.add_argument("--prior", help="whole: the prior folder")
parser.add_argument("--decoder", help="whole: the decoder folder")
parser.add_argument("--prior-steps", type=int, default=25)
parser.add_argument("--steps", type=int, default=25)
parser.add_argument("--size", type=int, default=512)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--samples", type=int, default=3)
parser.add_argument("--device", default="cpu")
parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
args = parser.parse_args()
DEVICE, DTYPE = torch.device(args.device), getattr(torch, args.dtype)

torch.set_num_threads(args.threads)
torch.manual_seed(0)
if args.component == "whole":
    import gc
    import resource

    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline

    # Phase times to stderr (the last stdout line stays the summary): each phase is the time up
    # to its stamp; each step's end is stamped by the pipelines' callback.
    stamps = []

    def stamp(what):
        stamps.append((what, time.perf_counter()))

    def on_step_end(what):
        def callback(_pipe, _step, _timestep, kwargs):
            stamp(what)
            return kwargs
        return callback

    start = time.perf_counter()
    stamp("start")
    with torch.inference_mode():
        prior = KandinskyV22PriorPipeline.from_pretrained(args.prior, torch_dtype=DTYPE).to(DEVICE)
        stamp("load prior pipeline")
        embeds = prior("a red cat sitting on a windowsill", num_inference_steps=args.prior_steps,
                       generator=torch.Generator().manual_seed(0),
                       callback_on_step_end=on_step_end("prior: encoders and steps"))
        image_embeds, negative = embeds.image_embeds, embeds.negative_image_embeds
        del prior, embeds
        gc.collect()
        stamp("prior: after the steps")
        decoder = KandinskyV22Pipeline.from_pretrained(args.decoder, torch_dtype=DTYPE).to(DEVICE)
        stamp("load decoder pipeline")
        image = decoder(image_embeds=image_embeds, negative_image_embeds=negative,
                        num_inference_steps=args.steps, height=args.size, width=args.size,
                        generator=torch.Generator().manual_seed(0),
                        callback_on_step_end=on_step_end("decoder steps")).images[0]
        stamp("movq decode")
    took = time.perf_counter() - start
    # Consecutive stamps of one kind are summed into one phase.
    phases = []
    for (_, before), (what, at) in zip(stamps, stamps[1:]):
        if phases and phases[-1][0] == what:
            phases[-1][1] += at - before
        else:
            phases.append([what, at - before])
    for what, seconds in phases:
        print(f"  {what}: {seconds:.1f} s", file=sys.stderr)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    print(f"pytorch {torch.__version__} whole on {args.device} {args.dtype}, threads "
          f"{args.threads}: {image.size[0]}x{image.size[1]} image, prior {args.prior_steps} steps, "
          f"decoder {args.steps} steps, in {took:.1f} s; peak RSS {peak_gb:.2f} GB; "
          f"median {took:.4f} s")
    raise SystemExit(0)
if args.component == "movq":
    from diffusers import VQModel

    model = VQModel(**{k: v for k, v in MOVQ_REAL_CONFIG.items() if not k.startswith("_")}).eval()
    latents = torch.randn(1, 4, 64, 64)

    def call():
        model.decode(latents, force_not_quantize=True)
elif args.component == "clip":
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    model = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_TEXT_G)).eval()
    row = [49406] + [320 + i for i in range(1, 11)] + [49407] * 66
    ids = torch.tensor([row, row])

    def call():
        model(input_ids=ids)
elif args.component == "prior":
    from diffusers import PriorTransformer

    model = PriorTransformer(**{k: v for k, v in PRIOR_REAL_22.items() if not k.startswith("_")})
    model = model.eval()
    e = PRIOR_REAL_22["embedding_dim"]
    x_t, text_embeds = torch.randn(2, e), torch.randn(2, e)
    text_hidden = torch.randn(2, 77, e)
    mask = (torch.arange(77) < 12).expand(2, 77)

    def call():
        model(x_t, 999, proj_embedding=text_embeds, encoder_hidden_states=text_hidden,
              attention_mask=mask)
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

model = model.to(DEVICE, DTYPE)
for _name, _value in list(globals().items()):
    if isinstance(_value, torch.Tensor) and _name != "ids" and _value.dtype != torch.bool:
        globals()[_name] = _value.to(DEVICE, DTYPE if _value.is_floating_point() else _value.dtype)
    elif isinstance(_value, torch.Tensor):
        globals()[_name] = _value.to(DEVICE)


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


times = []
with torch.inference_mode():
    call()
    sync()
    for _ in range(args.samples):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
print(f"pytorch {torch.__version__} {args.component} on {args.device} {args.dtype}, "
      f"threads {args.threads}: samples "
      + ", ".join(f"{t:.4f}" for t in times) + f" s; median {statistics.median(times):.4f} s")

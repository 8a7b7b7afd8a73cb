#!/usr/bin/env python3
"""Reference fixtures for the Kandinsky crates, produced by the reference implementation
(diffusers + transformers on PyTorch, versions pinned in requirements.txt).

For each component this script
  1. builds a small random-weight model with the reference class, keeping the real topology but
     narrower, with sizes that are equal in the real model made unequal (so a transposed or
     swapped weight cannot pass);
  2. saves it with `save_pretrained` (the on-disk format of the published checkpoints), in fp32
     and as the fp16 variant;
  3. runs it on fixed inputs (batch 2, non-square) and writes inputs, outputs and intermediate
     block outputs (forward hooks) to `reference.safetensors`;
  4. instantiates the real configuration on torch's `meta` device (no memory) and writes every
     parameter name and shape to a text manifest.

Deterministic: fixed seeds, CPU, float32. Run it with tools/reference/run.sh.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

torch.use_deterministic_algorithms(True)
torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


# --------------------------------------------------------------------------------------------
# helpers


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Replace every parameter by random values of a sane scale.

    Default initialisations set norm weights to 1 and biases to 0, which would hide a swapped
    gamma/beta or a missing bias: here every tensor is random and distinct.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            leaf = name.rsplit(".", 1)[-1]
            is_norm = any(k in name for k in ("norm", "group_norm", "norm_layer"))
            if p.ndim == 1 and is_norm and leaf == "weight":
                p.copy_(1.0 + 0.2 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            elif "embedding" in name:
                p.copy_(noise)
            else:
                fan_in = p[0].numel()
                p.copy_(noise / math.sqrt(fan_in))


def capture(module: torch.nn.Module, names: list[str], prefix: str = ""):
    """Register forward hooks that store the output of the named submodules."""
    store: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        sub = module.get_submodule(name)

        def hook(_m, _inp, out, name=name):
            if isinstance(out, (tuple, list)):
                out = out[0]
            store[prefix + name] = out.detach().clone()

        handles.append(sub.register_forward_hook(hook))
    return store, handles


def write_manifest(model: torch.nn.Module, config: dict, path: Path) -> None:
    """Every parameter and buffer name of the real-size model with its shape, one per line."""
    lines = [f"{name} {','.join(str(d) for d in p.shape)}" for name, p in model.state_dict().items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    total = sum(p.numel() for p in model.parameters())
    print(f"  manifest {path.relative_to(ROOT)}: {len(lines)} tensors, {total:,} parameters")


def save_model(model, folder: Path) -> None:
    """save_pretrained in fp32 and as the fp16 variant, the two forms published checkpoints take."""
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    # A copy: `.to()` works in place, and the reference outputs must come from the fp32 weights.
    copy.deepcopy(model).to(torch.float16).save_pretrained(folder, safe_serialization=True,
                                                           variant="fp16")


def save_reference(tensors: dict[str, torch.Tensor], path: Path) -> None:
    out = {k: v.detach().to(torch.float32).contiguous() if v.is_floating_point() else v.contiguous()
           for k, v in tensors.items()}
    save_file(out, str(path))
    size = path.stat().st_size
    print(f"  {path.relative_to(ROOT)}: {len(out)} tensors, {size / 1024:.0f} KiB")


# --------------------------------------------------------------------------------------------
# MoVQ


MOVQ_REAL_CONFIG = {
    "_class_name": "VQModel",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 256, 512],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D",
                         "AttnDownEncoderBlock2D"],
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "norm_type": "spatial",
    "num_vq_embeddings": 16384,
    "out_channels": 3,
    "sample_size": 32,
    "up_block_types": ["AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D",
                       "UpDecoderBlock2D"],
    "vq_embed_dim": 4,
}

# Same topology (4 levels, so the scale factor stays 8; 2 resnets per encoder block and 3 per
# decoder block, attention in the last encoder block, the first decoder block and both mid
# blocks, 1x1 shortcuts where the width changes, in the encoder and in the decoder), narrower.
# SpatialNorm hard-codes 32 groups, so no width can go below 32, and the fp32 + fp16 files must
# stay a small part of the fixture budget: widths [32, 32, 32, 64] (1.16M parameters, 7 MB for
# both files). Sizes differ where the code could confuse them: the last width from the others,
# the encoder's GroupNorm groups (8) from SpatialNorm's fixed 32, the codebook size (48) from
# every width, the image height from its width. The latent width must equal vq_embed_dim for
# spatial norm (the decoder conditions on the quantized latent), as in the real model.
MOVQ_SMALL_CONFIG = {
    **MOVQ_REAL_CONFIG,
    "block_out_channels": [32, 32, 32, 64],
    "norm_num_groups": 8,
    "num_vq_embeddings": 48,
}


def movq() -> None:
    from diffusers import VQModel

    print("movq")
    out_dir = FIXTURES / "movq"
    out_dir.mkdir(parents=True, exist_ok=True)

    cfg = {k: v for k, v in MOVQ_SMALL_CONFIG.items() if not k.startswith("_")}
    model = VQModel(**cfg).eval()
    randomize(model, seed=1)
    save_model(model, out_dir / "movq")

    gen = torch.Generator().manual_seed(2)
    # batch 2, non-square 24x40 image -> 3x5 latent
    image = torch.rand((2, 3, 24, 40), generator=gen) * 2.0 - 1.0
    ref: dict[str, torch.Tensor] = {"image": image}

    enc_names = ["encoder.conv_in"] + [f"encoder.down_blocks.{i}" for i in range(4)] + [
        "encoder.mid_block", "encoder.conv_norm_out", "encoder.conv_out", "quant_conv"]
    dec_names = ["post_quant_conv", "decoder.conv_in", "decoder.mid_block"] + [
        f"decoder.up_blocks.{i}" for i in range(4)] + ["decoder.conv_norm_out", "decoder.conv_out"]

    with torch.no_grad():
        store, handles = capture(model, enc_names, prefix="encode.")
        latents = model.encode(image).latents
        for h in handles:
            h.remove()
        ref.update(store)
        ref["latents"] = latents

        store, handles = capture(model, dec_names, prefix="decode.")
        decoded = model.decode(latents, force_not_quantize=True).sample
        for h in handles:
            h.remove()
        ref.update(store)
        ref["decoded"] = decoded

        quant, _loss, (_perplexity, _encodings, indices) = model.quantize(latents)
        ref["quantized"] = quant
        ref["quantize_indices"] = indices.reshape(latents.shape[0], *latents.shape[2:]).to(torch.int64)
        ref["decoded_quantized"] = model.decode(latents, force_not_quantize=False).sample

        # The fp16 file, read back into a float32 model: what loading `*.fp16.safetensors`
        # onto an f32 device must reproduce.
        half = VQModel.from_pretrained(out_dir / "movq", variant="fp16", torch_dtype=torch.float32).eval()
        ref["decoded_fp16_weights"] = half.decode(latents, force_not_quantize=True).sample
        ref["latents_fp16_weights"] = half.encode(image).latents

    save_reference(ref, out_dir / "reference.safetensors")

    with torch.device("meta"):
        real = VQModel(**{k: v for k, v in MOVQ_REAL_CONFIG.items() if not k.startswith("_")})
    write_manifest(real, MOVQ_REAL_CONFIG, FIXTURES / "manifests" / "movq.txt")


COMPONENTS = {"movq": movq}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("components", nargs="*", choices=[*COMPONENTS, []], help="default: all")
    args = parser.parse_args()
    for name in args.components or COMPONENTS:
        COMPONENTS[name]()


if __name__ == "__main__":
    main()

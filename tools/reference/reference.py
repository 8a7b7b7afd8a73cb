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

Deterministic: fixed seeds, CPU, float32. Run it with `tools/reference/setup.sh` (once) and
`tools/reference/.venv/bin/python tools/reference/reference.py` (README.md, "Tests").
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
    # Lookup tables (nn.Embedding) get unit variance; every other matrix is scaled by its fan-in
    # so that activations keep a sane scale through deep stacks (`time_embedding.linear_1` is a
    # Linear, whatever its name says).
    lookup = {f"{m}.weight" if m else "weight" for m, mod in module.named_modules()
              if isinstance(mod, torch.nn.Embedding)}
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            leaf = name.rsplit(".", 1)[-1]
            is_norm = "norm" in name.lower()  # norm, group_norm, norm_layer, LayerNorm
            if p.ndim == 1 and is_norm and leaf == "weight":
                p.copy_(1.0 + 0.2 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            elif name in lookup:
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


# --------------------------------------------------------------------------------------------
# UNet


UNET_REAL_BASE = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 64,
    "block_out_channels": [384, 768, 1152, 1536],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 768,
    "cross_attention_norm": None,
    "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D",
                         "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "layers_per_block": 3,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 8,
    "projection_class_embeddings_input_dim": None,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "scale_shift",
    "sample_size": 64,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "up_block_types": ["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                       "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
    "upcast_attention": False,
    "use_linear_projection": False,
}

UNET_V21 = {"addition_embed_type": "text_image", "encoder_hid_dim_type": "text_image_proj",
            "encoder_hid_dim": 1024}
UNET_V22 = {"addition_embed_type": "image", "encoder_hid_dim_type": "image_proj",
            "encoder_hid_dim": 1280}
UNET_V22_HINT = {**UNET_V22, "addition_embed_type": "image_hint"}

# name -> (conditioning, in_channels): the published checkpoints' variants.
UNET_VARIANTS = {
    "unet_21": (UNET_V21, 4),
    "unet_21_inpaint": (UNET_V21, 9),
    "unet_22": (UNET_V22, 4),
    "unet_22_inpaint": (UNET_V22, 9),
    "unet_22_controlnet": (UNET_V22_HINT, 8),
}

# Small versions with the real topology: 3 levels (a resnet-only level, then two added-KV
# attention levels, a resnet-only last up level), 2 resnets per down block (3 per up block),
# resnet-based down/up samplers, 8-channel output. Sizes that are equal in the real model are
# made unequal: the widths (8, 16, 24) differ per level and from the cross-attention width (20),
# the head size (8) gives 2 and 3 heads, the 2.1 text hidden width (12) and the 2.2 image width
# (28) differ from the cross-attention width, GroupNorm has 4 groups (not 32), the 2.1 text length
# is 7 (not 77), the latent is 12x20 (non-square, two halvings to 3x5). Batch 2 with two
# different timesteps. Widths are kept low so that four variants fit the fixture budget.
UNET_SMALL_BASE = {
    **UNET_REAL_BASE,
    "block_out_channels": [8, 16, 24],
    "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D",
                         "SimpleCrossAttnDownBlock2D"],
    "up_block_types": ["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                       "ResnetUpsampleBlock2D"],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 20,
    "norm_num_groups": 4,
    "sample_size": 16,
}

UNET_FIXTURES = {
    "unet_21": {**UNET_SMALL_BASE, **UNET_V21, "encoder_hid_dim": 12, "in_channels": 4},
    "unet_21_inpaint": {**UNET_SMALL_BASE, **UNET_V21, "encoder_hid_dim": 12, "in_channels": 9},
    "unet_22": {**UNET_SMALL_BASE, **UNET_V22, "encoder_hid_dim": 28, "in_channels": 4},
    "unet_22_controlnet": {**UNET_SMALL_BASE, **UNET_V22_HINT, "encoder_hid_dim": 28,
                           "in_channels": 8},
}
UNET_TEXT_LEN = 7


def unet_config(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def unet_inputs(cfg: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict, dict]:
    """Fixed inputs: (sample, forward kwargs, tensors to save)."""
    batch, h, w = 2, 12, 20
    sample_channels = 4 if cfg["addition_embed_type"] == "image_hint" else cfg["in_channels"]
    sample = torch.randn((batch, sample_channels, h, w), generator=gen)
    timestep = torch.tensor([999.0, 17.0])
    saved = {"sample": sample, "timestep": timestep}
    added: dict[str, torch.Tensor] = {}
    kwargs: dict = {"timestep": timestep, "added_cond_kwargs": added}
    if cfg["encoder_hid_dim_type"] == "text_image_proj":
        cross = cfg["cross_attention_dim"]
        hidden = torch.randn((batch, UNET_TEXT_LEN, cfg["encoder_hid_dim"]), generator=gen)
        added["text_embeds"] = torch.randn((batch, cross), generator=gen)
        added["image_embeds"] = torch.randn((batch, cross), generator=gen)
        kwargs["encoder_hidden_states"] = hidden
        saved["encoder_hidden_states"] = hidden
    else:
        added["image_embeds"] = torch.randn((batch, cfg["encoder_hid_dim"]), generator=gen)
        kwargs["encoder_hidden_states"] = None
    if cfg["addition_embed_type"] == "image_hint":
        added["hint"] = torch.rand((batch, 3, 8 * h, 8 * w), generator=gen)
    saved.update(added)
    return sample, kwargs, saved


def unet() -> None:
    from diffusers import UNet2DConditionModel

    print("unet")
    for seed, (name, cfg) in enumerate(UNET_FIXTURES.items(), start=10):
        out_dir = FIXTURES / name
        out_dir.mkdir(parents=True, exist_ok=True)
        model = UNet2DConditionModel(**unet_config(cfg)).eval()
        randomize(model, seed=seed)
        if name == "unet_22":
            save_model(model, out_dir / "unet")  # fp32 and the fp16 variant
        else:
            folder = out_dir / "unet"
            if folder.exists():
                shutil.rmtree(folder)
            model.save_pretrained(folder, safe_serialization=True)
        sample, kwargs, ref = unet_inputs(cfg, torch.Generator().manual_seed(seed + 100))
        levels = len(cfg["block_out_channels"])
        names = (["time_embedding", "add_embedding", "encoder_hid_proj", "conv_in"]
                 + [f"down_blocks.{i}" for i in range(levels)] + ["mid_block"]
                 + [f"up_blocks.{i}" for i in range(levels)] + ["conv_norm_out", "conv_out"])
        if cfg["addition_embed_type"] == "image_hint":
            names.append("add_embedding.input_hint_block")
        with torch.no_grad():
            store, handles = capture(model, names)
            ref["output"] = model(sample, **kwargs).sample
            for h in handles:
                h.remove()
            ref.update(store)
            if name == "unet_22":
                half = UNet2DConditionModel.from_pretrained(
                    out_dir / "unet", variant="fp16", torch_dtype=torch.float32).eval()
                ref["output_fp16_weights"] = half(sample, **kwargs).sample
        save_reference(ref, out_dir / "reference.safetensors")

    for name, (cond, in_channels) in UNET_VARIANTS.items():
        config = {**UNET_REAL_BASE, **cond, "in_channels": in_channels}
        with torch.device("meta"):
            real = UNet2DConditionModel(**unet_config(config))
        write_manifest(real, config, FIXTURES / "manifests" / f"{name}.txt")


def pipeline22_index(prior_dir: Path, decoder_dir: Path) -> None:
    """The model_index.json files (the components diffusers' from_pretrained loads) and the
    prior's image_processor, as in the published 2.2 repos."""
    shutil.copy(FIXTURES / "prior_pipeline22" / "model_index.json", prior_dir)
    shutil.copytree(FIXTURES / "prior_pipeline22" / "image_processor", prior_dir / "image_processor",
                    dirs_exist_ok=True)
    (decoder_dir / "model_index.json").write_text(json.dumps({
        "_class_name": "KandinskyV22Pipeline",
        "movq": ["diffusers", "VQModel"],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "unet": ["diffusers", "UNet2DConditionModel"],
    }, indent=2))


def pipeline22_full(out: str) -> None:
    """Real-size Kandinsky 2.2 prior and decoder pipeline folders with random weights (about
    20 GB: prior 4.1, bigG text 2.8, bigG vision 7.4, UNet 5.0, MoVQ 0.3), for measuring the
    memory and time of a whole generation; never committed. One component at a time."""
    import gc

    from diffusers import DDPMScheduler, PriorTransformer, UnCLIPScheduler, UNet2DConditionModel, VQModel
    from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    root = Path(out)
    prior_dir, decoder_dir = root / "kandinsky-2-2-prior", root / "kandinsky-2-2-decoder"
    for d in (prior_dir, decoder_dir):
        d.mkdir(parents=True, exist_ok=True)
    pipeline22_index(prior_dir, decoder_dir)
    tok = prior_dir / "tokenizer"
    shutil.copytree(FIXTURES / "tokenizers" / "clip_bpe", tok, dirs_exist_ok=True)
    shutil.copy(FIXTURES / "tokenizers" / "clip_22" / "tokenizer_config.json", tok)
    UnCLIPScheduler.from_pretrained(FIXTURES / "schedulers" / "unclip").save_pretrained(prior_dir / "scheduler")
    DDPMScheduler.from_pretrained(FIXTURES / "schedulers" / "ddpm").save_pretrained(decoder_dir / "scheduler")
    jobs = [
        (prior_dir / "prior", lambda: PriorTransformer(**{k: v for k, v in PRIOR_REAL_22.items() if not k.startswith("_")})),
        (prior_dir / "text_encoder", lambda: CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_TEXT_G))),
        (prior_dir / "image_encoder", lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_VISION_G))),
        (decoder_dir / "unet", lambda: UNet2DConditionModel(**unet_config({**UNET_REAL_BASE, **UNET_V22, "in_channels": 4}))),
        (decoder_dir / "movq", lambda: VQModel(**{k: v for k, v in MOVQ_REAL_CONFIG.items() if not k.startswith("_")})),
    ]
    for folder, build in jobs:
        model = build().eval()
        if isinstance(model, PriorTransformer):
            with torch.no_grad():
                model.clip_std.fill_(1.0)
        model.save_pretrained(folder, safe_serialization=True, max_shard_size="20GB")
        print(f"  wrote {folder}")
        del model
        gc.collect()


def unet_full(out: str) -> None:
    """A real-size 2.2 decoder UNet with random weights (about 5 GB, fp32), for measuring
    loading memory and speed; never committed."""
    from diffusers import UNet2DConditionModel

    config = {**UNET_REAL_BASE, **UNET_V22, "in_channels": 4}
    model = UNet2DConditionModel(**unet_config(config)).eval()
    folder = Path(out)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="20GB")
    print(f"  wrote {folder} ({sum(p.numel() for p in model.parameters()):,} parameters)")


# --------------------------------------------------------------------------------------------
# Prior


PRIOR_REAL_21 = {
    "_class_name": "PriorTransformer",
    "num_attention_heads": 32,
    "attention_head_dim": 64,
    "num_layers": 20,
    "embedding_dim": 768,
    "num_embeddings": 77,
    "additional_embeddings": 4,
    "dropout": 0.0,
    "time_embed_act_fn": "silu",
    "norm_in_type": None,
    "embedding_proj_norm_type": None,
    "encoder_hid_proj_type": "linear",
    "added_emb_type": "prd",
    "time_embed_dim": None,
    "embedding_proj_dim": None,
    "clip_embed_dim": None,
}
PRIOR_REAL_22 = {**PRIOR_REAL_21, "embedding_dim": 1280}

# The real topology (pre-LN blocks, 4 extra tokens with the prd token last, causal + padding
# mask) at small sizes, with every width that the real model shares made distinct: 3 heads of
# 8 (inner width 24), embedding width 20, the text-embedding projection's input 18, the output
# (CLIP) width 22, the time MLP's hidden width 36; 2 blocks; 9 text tokens.
PRIOR_SMALL = {
    **PRIOR_REAL_21,
    "num_attention_heads": 3,
    "attention_head_dim": 8,
    "num_layers": 2,
    "embedding_dim": 20,
    "num_embeddings": 9,
    "time_embed_dim": 36,
    "embedding_proj_dim": 18,
    "clip_embed_dim": 22,
}


def prior() -> None:
    from diffusers import PriorTransformer

    print("prior")
    out_dir = FIXTURES / "prior"
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = PRIOR_SMALL
    model = PriorTransformer(**{k: v for k, v in cfg.items() if not k.startswith("_")}).eval()
    randomize(model, seed=20)
    gen = torch.Generator().manual_seed(21)
    with torch.no_grad():
        # Bare parameters: O(1) values (fan-in scaling would make them negligible), a positive
        # standard deviation.
        for p in (model.positional_embedding, model.prd_embedding, model.clip_mean):
            p.copy_(torch.randn(p.shape, generator=gen))
        model.clip_std.copy_(0.5 + torch.rand(model.clip_std.shape, generator=gen))
    save_model(model, out_dir / "prior")

    batch, tokens = 2, cfg["num_embeddings"]
    gen = torch.Generator().manual_seed(22)
    x_t = torch.randn((batch, cfg["embedding_dim"]), generator=gen)
    proj = torch.randn((batch, cfg["embedding_proj_dim"]), generator=gen)
    hidden = torch.randn((batch, tokens, cfg["embedding_dim"]), generator=gen)
    # Prompts of 5 and 9 tokens: the first is padded, the second fills the context.
    mask = torch.zeros((batch, tokens), dtype=torch.bool)
    mask[0, :5] = True
    mask[1, :] = True
    timestep = torch.tensor([999, 3])
    ref = {"hidden_states": x_t, "proj_embedding": proj, "encoder_hidden_states": hidden,
           "attention_mask": mask.to(torch.uint8), "timestep": timestep.to(torch.float32)}
    names = (["time_embedding", "proj_in", "embedding_proj", "encoder_hidden_states_proj"]
             + [f"transformer_blocks.{i}" for i in range(cfg["num_layers"])]
             + ["norm_out", "proj_to_clip_embeddings"])
    with torch.no_grad():
        store, handles = capture(model, names)
        out = model(x_t, timestep, proj_embedding=proj, encoder_hidden_states=hidden,
                    attention_mask=mask).predicted_image_embedding
        for h in handles:
            h.remove()
        ref.update(store)
        ref["output"] = out
        ref["post_processed"] = model.post_process_latents(out)
        half = PriorTransformer.from_pretrained(out_dir / "prior", variant="fp16",
                                                torch_dtype=torch.float32).eval()
        ref["output_fp16_weights"] = half(x_t, timestep, proj_embedding=proj,
                                          encoder_hidden_states=hidden,
                                          attention_mask=mask).predicted_image_embedding
        # Both prompts padded, the second with a gap (tokens 0, 1, 3, 4, 5): a forward that
        # leaves the padding out has something to leave out.
        padded = torch.zeros((batch, tokens), dtype=torch.bool)
        padded[0, :5] = True
        padded[1, [0, 1, 3, 4, 5]] = True
        ref["attention_mask_padded"] = padded.to(torch.uint8)
        ref["output_padded"] = model(x_t, timestep, proj_embedding=proj,
                                     encoder_hidden_states=hidden,
                                     attention_mask=padded).predicted_image_embedding
    save_reference(ref, out_dir / "reference.safetensors")

    for name, config in (("prior_21", PRIOR_REAL_21), ("prior_22", PRIOR_REAL_22)):
        with torch.device("meta"):
            real = PriorTransformer(**{k: v for k, v in config.items() if not k.startswith("_")})
        write_manifest(real, config, FIXTURES / "manifests" / f"{name}.txt")


# --------------------------------------------------------------------------------------------
# CLIP text / vision encoders and the 2.1 MultilingualCLIP


CLIP_TEXT_L = {  # OpenAI CLIP ViT-L/14, text tower (Kandinsky 2.1 prior)
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "projection_dim": 768,
    "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 2,
    "pad_token_id": 1,
}
CLIP_TEXT_G = {  # LAION CLIP ViT-bigG/14, text tower (Kandinsky 2.2 prior)
    **CLIP_TEXT_L, "hidden_size": 1280, "intermediate_size": 5120, "projection_dim": 1280,
    "num_hidden_layers": 32, "num_attention_heads": 20, "hidden_act": "gelu",
}
CLIP_VISION_L = {
    "hidden_size": 1024, "intermediate_size": 4096, "projection_dim": 768,
    "num_hidden_layers": 24, "num_attention_heads": 16, "num_channels": 3, "image_size": 224,
    "patch_size": 14, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
}
CLIP_VISION_G = {
    **CLIP_VISION_L, "hidden_size": 1664, "intermediate_size": 8192, "projection_dim": 1280,
    "num_hidden_layers": 48, "num_attention_heads": 16, "hidden_act": "gelu",
}
MCLIP_REAL = {  # XLM-Roberta-Large-Vit-L-14 (kandinsky-2-1/text_encoder)
    "vocab_size": 250002, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
    "intermediate_size": 4096, "hidden_act": "gelu", "max_position_embeddings": 514,
    "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0,
    "eos_token_id": 2, "transformerDimSize": 1024, "imageDimSize": 768,
}

# Small versions: every width distinct (hidden 24 with 3 heads of 8, MLP 40, projection 20),
# 2 layers, 11 text positions. Text "L" uses quick_gelu and pads with a low id after the EOT
# (the 2.1 tokenizer pads with "!"), text "G" uses gelu and pads with the EOT id itself (the 2.2
# tokenizer), so the EOT is the first of several maximal ids. The vision tower sees 28x28
# images in 7x7 patches (16 patches + CLS) with hidden 32 (4 heads), MLP 48, projection 20.
CLIP_TEXT_SMALL = {**CLIP_TEXT_L, "vocab_size": 99, "hidden_size": 24, "intermediate_size": 40,
                   "projection_dim": 20, "num_hidden_layers": 2, "num_attention_heads": 3,
                   "max_position_embeddings": 11}
CLIP_VISION_SMALL = {**CLIP_VISION_G, "hidden_size": 32, "intermediate_size": 48,
                     "projection_dim": 20, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "image_size": 28, "patch_size": 7}
MCLIP_SMALL = {**MCLIP_REAL, "vocab_size": 120, "hidden_size": 24, "num_hidden_layers": 2,
               "num_attention_heads": 3, "intermediate_size": 40, "max_position_embeddings": 15,
               "transformerDimSize": 24, "imageDimSize": 20}


def clip() -> None:
    from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)
    from diffusers.pipelines.kandinsky.text_encoder import MCLIPConfig, MultilingualCLIP

    print("clip")
    gen = torch.Generator().manual_seed(31)
    eot = CLIP_TEXT_SMALL["vocab_size"] - 1
    # Two prompts: 4 tokens and 9 tokens (SOT ... EOT), then padding.
    def text_ids(pad: int) -> torch.Tensor:
        ids = torch.full((2, 11), pad, dtype=torch.int64)
        ids[0, :4] = torch.tensor([eot - 1, 5, 17, eot])
        ids[1, :9] = torch.tensor([eot - 1, 3, 40, 7, 90, 12, 0, 63, eot])
        return ids

    for seed, (name, act, pad) in enumerate((("clip_text_l", "quick_gelu", 0),
                                              ("clip_text_g", "gelu", eot)), start=32):
        cfg = {**CLIP_TEXT_SMALL, "hidden_act": act}
        model = CLIPTextModelWithProjection(CLIPTextConfig(**cfg)).eval()
        randomize(model, seed=seed)
        out_dir = FIXTURES / name
        out_dir.mkdir(parents=True, exist_ok=True)
        folder = out_dir / "text_encoder"
        if folder.exists():
            shutil.rmtree(folder)
        model.save_pretrained(folder, safe_serialization=True)
        ids = text_ids(pad)
        layers = [f"text_model.encoder.layers.{i}" for i in range(cfg["num_hidden_layers"])]
        with torch.no_grad():
            store, handles = capture(model, ["text_model.embeddings"] + layers)
            out = model(input_ids=ids)
            for h in handles:
                h.remove()
        ref = {"input_ids": ids, **store, "last_hidden_state": out.last_hidden_state,
               "text_embeds": out.text_embeds}
        save_reference(ref, out_dir / "reference.safetensors")

    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_VISION_SMALL)).eval()
    randomize(model, seed=34)
    with torch.no_grad():
        model.vision_model.embeddings.class_embedding.copy_(torch.randn(32, generator=gen))
    out_dir = FIXTURES / "clip_vision"
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = out_dir / "image_encoder"
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    pixels = torch.randn((2, 3, 28, 28), generator=gen)
    layers = [f"vision_model.encoder.layers.{i}" for i in range(2)]
    with torch.no_grad():
        store, handles = capture(model, ["vision_model.embeddings", "vision_model.pre_layrnorm"]
                                 + layers)
        out = model(pixel_values=pixels)
        for h in handles:
            h.remove()
    save_reference({"pixel_values": pixels, **store, "last_hidden_state": out.last_hidden_state,
                    "image_embeds": out.image_embeds}, out_dir / "reference.safetensors")

    model = MultilingualCLIP(MCLIPConfig(**MCLIP_SMALL)).eval()
    randomize(model, seed=35)
    out_dir = FIXTURES / "mclip"
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = out_dir / "text_encoder"
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    # <s> ... </s> then <pad> (id 1), as the XLM-R tokenizer pads to max_length.
    ids = torch.full((2, 12), 1, dtype=torch.int64)
    ids[0, :5] = torch.tensor([0, 57, 8, 101, 2])
    ids[1, :12] = torch.tensor([0, 33, 4, 119, 60, 75, 9, 14, 88, 3, 21, 2])
    mask = (ids != 1).to(torch.int64)
    layers = [f"transformer.encoder.layer.{i}" for i in range(2)]
    with torch.no_grad():
        store, handles = capture(model, ["transformer.embeddings"] + layers)
        pooled, hidden = model(input_ids=ids, attention_mask=mask)
        for h in handles:
            h.remove()
    save_reference({"input_ids": ids, "attention_mask": mask, **store, "hidden_states": hidden,
                    "pooled": pooled}, out_dir / "reference.safetensors")

    manifests = (("clip_text_l", CLIPTextModelWithProjection, CLIPTextConfig, CLIP_TEXT_L),
                 ("clip_text_g", CLIPTextModelWithProjection, CLIPTextConfig, CLIP_TEXT_G),
                 ("clip_vision_l", CLIPVisionModelWithProjection, CLIPVisionConfig, CLIP_VISION_L),
                 ("clip_vision_g", CLIPVisionModelWithProjection, CLIPVisionConfig, CLIP_VISION_G),
                 ("mclip", MultilingualCLIP, MCLIPConfig, MCLIP_REAL))
    for name, cls, config_cls, cfg in manifests:
        with torch.device("meta"):
            real = cls(config_cls(**cfg))
        write_manifest(real, cfg, FIXTURES / "manifests" / f"{name}.txt")


# --------------------------------------------------------------------------------------------
# Tokenizers


TOKENIZER_PROMPTS = [
    "a red cat sitting on a windowsill",
    "A Photo of an ASTRONAUT riding a horse!!",
    "café crème brûlée, naïve façade",
    "Красивый закат над морем",
    "東京の夜景、ネオンの光",
    "一只可爱的熊猫",
    "sunset 🌅 over the sea 🌊 with 🐬",
    "   leading and trailing   spaces\t\ttabs\nnewline  ",
    "",
    "it's a dog's life, isn't it? they'll've",
    "numbers 1234567 and 3.14159",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ and Ünïcödé ẞ İstanbul",
    "e\u0301 composed by NFC, <|endoftext|> typed by hand",
    " ".join(["a very long prompt about a castle on a hill at dawn with mist"] * 8),
]


def clip_bpe_files(out: Path) -> None:
    """vocab.json and merges.txt of the 49408-token CLIP BPE, built from the merges list OpenAI
    published (shipped by open-clip-torch) exactly as CLIP's own tokenizer builds its table."""
    import gzip
    import importlib.util

    from transformers.convert_slow_tokenizer import bytes_to_unicode

    # Located without importing open_clip (whose import needs torchvision).
    package = importlib.util.find_spec("open_clip").submodule_search_locations[0]
    path = Path(package) / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)},
                                               ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges)
                                    + "\n")


def tokenizers() -> None:
    from transformers import CLIPTokenizer, XLMRobertaTokenizer

    print("tokenizers")
    root = FIXTURES / "tokenizers"
    bpe = root / "clip_bpe"
    clip_bpe_files(bpe)
    ref: dict[str, torch.Tensor] = {}
    # The published prior repos' tokenizer settings: 2.1 pads with "!", 2.2 with the EOT token.
    for name, pad in (("clip_21", "!"), ("clip_22", "<|endoftext|>")):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "pad_token": pad,
                  "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                  "unk_token": "<|endoftext|>", "do_lower_case": True, "errors": "replace"}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        # The reference loads the folder the way the pipelines do, from vocab.json + merges.txt.
        tmp = root / f".{name}_full"
        shutil.copytree(bpe, tmp, dirs_exist_ok=True)
        shutil.copy(folder / "tokenizer_config.json", tmp / "tokenizer_config.json")
        tok = CLIPTokenizer.from_pretrained(tmp)
        shutil.rmtree(tmp)
        enc = tok(TOKENIZER_PROMPTS, padding="max_length", max_length=77, truncation=True,
                  return_tensors="pt")
        ref[f"{name}.input_ids"] = enc.input_ids
        ref[f"{name}.attention_mask"] = enc.attention_mask

    # XLM-R: no package ships its sentencepiece model, so train a small one on a multilingual
    # corpus and let transformers convert it; the folder holds the tokenizer.json it writes.
    import sentencepiece as spm

    corpus = root / ".xlmr_corpus.txt"
    lines = TOKENIZER_PROMPTS[:-1] + [
        "the quick brown fox jumps over the lazy dog", "un chat noir dort sur le canapé",
        "der schnelle braune Fuchs springt", "быстрая коричневая лиса прыгает через собаку",
        "敏捷的棕色狐狸跳过了懒狗", "素早い茶色の狐が怠け者の犬を飛び越える",
        "a castle on a hill at dawn with mist", "portrait of a woman, oil painting, 4k",
    ] * 3
    corpus.write_text("\n".join(lines) + "\n")
    prefix = root / ".xlmr_spm"
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(prefix), vocab_size=300,
                                   model_type="unigram", character_coverage=1.0,
                                   hard_vocab_limit=False, minloglevel=2)
    # As transformers' XLM-R converter does with the real model: fairseq's four specials, the
    # sentencepiece pieces after its own three specials, then <mask>; the model's NFKC
    # normalization table.
    from sentencepiece import sentencepiece_model_pb2 as spm_pb

    proto = spm_pb.ModelProto()
    proto.ParseFromString(Path(str(prefix) + ".model").read_bytes())
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p.piece, p.score) for p in proto.pieces[3:]] + [("<mask>", 0.0)]
    xlmr = XLMRobertaTokenizer(vocab=vocab, model_max_length=77,
                               _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap)
    folder = root / "xlmr"
    if folder.exists():
        shutil.rmtree(folder)
    xlmr.save_pretrained(folder)
    for extra in ("sentencepiece.bpe.model",):
        if (folder / extra).exists():
            (folder / extra).unlink()
    for f in (corpus, Path(str(prefix) + ".model"), Path(str(prefix) + ".vocab")):
        f.unlink()
    xlmr = XLMRobertaTokenizer.from_pretrained(folder)
    enc = xlmr(TOKENIZER_PROMPTS, padding="max_length", max_length=77, truncation=True,
               return_tensors="pt")
    ref["xlmr.input_ids"] = enc.input_ids
    ref["xlmr.attention_mask"] = enc.attention_mask
    save_reference(ref, root / "reference.safetensors")
    (root / "prompts.json").write_text(json.dumps(TOKENIZER_PROMPTS, ensure_ascii=False, indent=1)
                                       + "\n")


# --------------------------------------------------------------------------------------------
# CLIP image preprocessing


CLIP_IMAGE_PROCESSOR = {  # the prior repos' image_processor/preprocessor_config.json
    "do_resize": True, "size": {"shortest_edge": 224}, "resample": 3,
    "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
    "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True,
}


def preprocessing() -> None:
    """Synthesized images and the reference CLIP image processor's output for them (the PIL
    backend: transformers' default backend needs torchvision, which is not installed)."""
    import numpy as np
    from PIL import Image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    print("preprocessing")
    rng = np.random.default_rng(40)
    # Three images, kept small (each output is 224x224x3 floats): a non-square "photo" with
    # smooth shapes, a gradient, a hard-edged disc and sensor-like noise (downscaled, landscape);
    # pure gradients (downscaled, portrait); uniform noise (upscaled: 96 wide -> 224).
    y, x = np.mgrid[0:320, 0:480].astype(np.float64)
    photo = np.stack([
        128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0),
        (x + y) / (480 + 320) * 255,
        255 * ((x - 240) ** 2 + (y - 150) ** 2 < 90 ** 2),
    ], axis=-1) + rng.normal(0, 12, (320, 480, 3))
    gy, gx = np.mgrid[0:300, 0:230].astype(np.float64)
    gradient = np.stack([gx / 229 * 255, 255 - gy / 299 * 255, (gx + gy) / 528 * 255], axis=-1)
    images = {
        "photo_480x320": photo,
        "gradient_230x300": gradient,
        "noise_96x128": rng.uniform(0, 255, (128, 96, 3)),
    }
    processor = CLIPImageProcessorPil(**CLIP_IMAGE_PROCESSOR)
    ref = {}
    for name, array in images.items():
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
        ref[f"{name}.image"] = torch.from_numpy(array.copy())
        out = processor(images=Image.fromarray(array), return_tensors="pt").pixel_values
        ref[f"{name}.pixel_values"] = out
    out_dir = FIXTURES / "clip_image_processor"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "CLIPImageProcessor", **CLIP_IMAGE_PROCESSOR},
                   indent=2) + "\n")
    save_reference(ref, out_dir / "reference.safetensors")


# --------------------------------------------------------------------------------------------
# Schedulers


SCHEDULER_CONFIGS = {
    # The prior repos' scheduler (UnCLIPScheduler, squaredcos_cap_v2 implied).
    "unclip": ("UnCLIPScheduler", {"num_train_timesteps": 1000, "variance_type": "fixed_small_log",
                                   "clip_sample": True, "clip_sample_range": 10.0,
                                   "prediction_type": "sample"}),
    # kandinsky-2-1's decoder scheduler.
    "ddim": ("DDIMScheduler", {"num_train_timesteps": 1000, "beta_schedule": "linear",
                               "beta_start": 0.00085, "beta_end": 0.012, "clip_sample": False,
                               "set_alpha_to_one": False, "steps_offset": 1,
                               "prediction_type": "epsilon", "thresholding": False}),
    # kandinsky-2-2-decoder's scheduler as first uploaded, and with the later clip_sample.
    "ddpm": ("DDPMScheduler", {"num_train_timesteps": 1000, "beta_schedule": "linear",
                               "beta_start": 0.00085, "beta_end": 0.012, "clip_sample": False,
                               "set_alpha_to_one": False, "steps_offset": 1,
                               "prediction_type": "epsilon", "thresholding": False}),
    "ddpm_clip": ("DDPMScheduler", {"num_train_timesteps": 1000, "beta_schedule": "linear",
                                    "beta_start": 0.00085, "beta_end": 0.012,
                                    "clip_sample": True, "clip_sample_range": 1.0,
                                    "steps_offset": 1, "prediction_type": "epsilon"}),
    # Variants exercising the other options the schedulers implement.
    "ddpm_learned_trailing": ("DDPMScheduler", {
        "num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
        "variance_type": "learned_range", "timestep_spacing": "trailing",
        "prediction_type": "v_prediction", "clip_sample": False}),
    "ddim_linspace_sample": ("DDIMScheduler", {
        "num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
        "beta_end": 0.012, "timestep_spacing": "linspace", "prediction_type": "sample",
        "set_alpha_to_one": True, "clip_sample": True, "clip_sample_range": 1.5}),
}


def schedulers() -> None:
    import diffusers
    import diffusers.schedulers.scheduling_ddpm as ddpm_mod
    import diffusers.schedulers.scheduling_unclip as unclip_mod

    print("schedulers")
    out_dir = FIXTURES / "schedulers"
    out_dir.mkdir(parents=True, exist_ok=True)
    ref: dict[str, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(50)
    queue: list[torch.Tensor] = []
    # The reference draws its step noise with randn_tensor: hand it ours instead, recorded.
    ddpm_mod.randn_tensor = unclip_mod.randn_tensor = lambda *a, **k: queue.pop(0)
    for name, (cls_name, cfg) in SCHEDULER_CONFIGS.items():
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "scheduler_config.json").write_text(
            json.dumps({"_class_name": cls_name, **cfg}, indent=2) + "\n")
        sched = getattr(diffusers, cls_name).from_pretrained(folder)
        ref[f"{name}.betas"] = sched.betas
        ref[f"{name}.alphas_cumprod"] = sched.alphas_cumprod
        # Row n-1: the timesteps for n steps, -1000 after them (numpy's float arange can give one
        # more than asked for with trailing spacing, ending at timestep -1; the reference keeps
        # it, and so must we).
        table = torch.full((100, 128), -1000, dtype=torch.int64)
        for n in range(2 if cls_name == "UnCLIPScheduler" else 1, 101):
            sched.set_timesteps(n)
            table[n - 1, :len(sched.timesteps)] = torch.as_tensor(sched.timesteps)
        ref[f"{name}.timesteps"] = table

        # A few steps on a prior-shaped and a decoder-shaped sample, model outputs and noise
        # given (an 8-channel output where the variance is learned).
        steps = 4
        for shape_name, shape in (("vector", (2, 6)), ("latent", (2, 4, 3, 5))):
            sched.set_timesteps(steps)
            timesteps = [int(t) for t in sched.timesteps]
            sample = torch.randn(shape, generator=gen)
            ref[f"{name}.{shape_name}.sample"] = sample
            out_shape = list(shape)
            if cfg.get("variance_type") == "learned_range":
                out_shape[1] *= 2
            for i, t in enumerate(timesteps):
                model_output = torch.randn(out_shape, generator=gen)
                if cfg.get("variance_type") == "learned_range":
                    # the variance channels are in [-1, 1]
                    half = shape[1]
                    model_output[:, half:] = torch.tanh(model_output[:, half:])
                noise = torch.randn(shape, generator=gen)
                queue[:] = [noise]
                kwargs = {}
                if cls_name == "UnCLIPScheduler":
                    kwargs["prev_timestep"] = timesteps[i + 1] if i + 1 < steps else None
                out = sched.step(model_output, t, sample, **kwargs)
                used = not queue
                key = f"{name}.{shape_name}.{i}"
                ref[f"{key}.model_output"] = model_output
                ref[f"{key}.noise"] = noise if used else torch.zeros(0)
                ref[f"{key}.prev_sample"] = out.prev_sample
                ref[f"{key}.pred_original_sample"] = out.pred_original_sample
                sample = out.prev_sample
        if cls_name != "UnCLIPScheduler":
            x0 = torch.randn((2, 4, 3, 5), generator=gen)
            noise = torch.randn((2, 4, 3, 5), generator=gen)
            ref[f"{name}.add_noise.original"] = x0
            ref[f"{name}.add_noise.noise"] = noise
            ref[f"{name}.add_noise.t500"] = sched.add_noise(x0, noise, torch.tensor([500]))
    save_reference(ref, out_dir / "reference.safetensors")


# The fast samplers, each built as `Class.from_config(decoder_scheduler.config, **overrides)` on
# the 2.2 decoder's scheduler config (SCHEDULER_CONFIGS["ddpm"]), as users swap samplers in
# diffusers; a few on other bases for the options they exercise. name: (class, overrides, base).
SAMPLER_CONFIGS = {
    "dpmpp2m": ("DPMSolverMultistepScheduler", {}, "ddpm"),
    "dpmpp2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, "ddpm"),
    "dpmpp2m_exponential": ("DPMSolverMultistepScheduler", {"use_exponential_sigmas": True}, "ddpm"),
    "dpmpp2m_beta": ("DPMSolverMultistepScheduler", {"use_beta_sigmas": True}, "ddpm"),
    "dpmpp2m_heun_leading": ("DPMSolverMultistepScheduler",
                             {"solver_type": "heun", "timestep_spacing": "leading"}, "ddpm"),
    "dpmpp3m": ("DPMSolverMultistepScheduler", {"solver_order": 3}, "ddpm"),
    "dpmpp3m_karras_nolof": ("DPMSolverMultistepScheduler",
                             {"solver_order": 3, "use_karras_sigmas": True,
                              "lower_order_final": False}, "ddpm"),
    "dpmpp2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, "ddpm"),
    "dpmpp2m_sde_karras": ("DPMSolverMultistepScheduler",
                           {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}, "ddpm"),
    "dpmpp3m_sde": ("DPMSolverMultistepScheduler",
                    {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, "ddpm"),
    "dpm2m_sigma_min": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}, "ddpm"),
    "dpmpp2m_vpred_trailing": ("DPMSolverMultistepScheduler", {}, "ddpm_learned_trailing"),
    "dpmpp2m_sample_clip": ("DPMSolverMultistepScheduler", {"lambda_min_clipped": -5.1},
                            "ddim_linspace_sample"),
    "unipc": ("UniPCMultistepScheduler", {}, "ddpm"),
    # bh1 with the default final sigma 0 gives NaN at the last step in diffusers (B(h) = −∞
    # times a zero correction); ours gives the limit. Compared with a final sigma_min instead.
    "unipc_bh1_karras": ("UniPCMultistepScheduler",
                         {"solver_type": "bh1", "use_karras_sigmas": True,
                          "final_sigmas_type": "sigma_min"}, "ddpm"),
    "unipc3_leading": ("UniPCMultistepScheduler",
                       {"solver_order": 3, "timestep_spacing": "leading"}, "ddpm"),
    # Noise prediction needs a final sigma above 0 (σ_t·(eʰ − 1) is 0·∞ there).
    "unipc_noise_pred": ("UniPCMultistepScheduler",
                         {"predict_x0": False, "final_sigmas_type": "sigma_min"}, "ddpm"),
    "deis": ("DEISMultistepScheduler", {}, "ddpm"),
    "deis3_karras": ("DEISMultistepScheduler", {"solver_order": 3, "use_karras_sigmas": True},
                     "ddpm"),
    "dpmpp2s": ("DPMSolverSinglestepScheduler", {}, "ddpm"),
    "dpmpp3s_karras": ("DPMSolverSinglestepScheduler",
                       {"solver_order": 3, "use_karras_sigmas": True}, "ddpm"),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}, "ddpm"),
    "pndm_prk": ("PNDMScheduler", {}, "ddpm"),
    "euler": ("EulerDiscreteScheduler", {}, "ddpm"),
    "euler_karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, "ddpm"),
    "euler_leading_vpred": ("EulerDiscreteScheduler", {"timestep_spacing": "leading"},
                            "ddpm_learned_trailing"),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}, "ddpm"),
    "euler_a_leading": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "leading"}, "ddpm"),
    "heun": ("HeunDiscreteScheduler", {}, "ddpm"),
    "heun_karras": ("HeunDiscreteScheduler", {"use_karras_sigmas": True}, "ddpm"),
    "kdpm2": ("KDPM2DiscreteScheduler", {}, "ddpm"),
    "kdpm2_karras": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}, "ddpm"),
    "kdpm2_a": ("KDPM2AncestralDiscreteScheduler", {}, "ddpm"),
    "kdpm2_a_karras": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}, "ddpm"),
    "lms": ("LMSDiscreteScheduler", {}, "ddpm"),
    "lms_karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}, "ddpm"),
}

SAMPLER_STEPS = (6, 20)


def samplers() -> None:
    """Every sampler of SAMPLER_CONFIGS at SAMPLER_STEPS: its config as written by diffusers'
    from_config (fixtures/samplers/NAME/scheduler_config.json), its timesteps, sigmas and
    init_noise_sigma, then a whole run on a (2, 4, 3, 5) sample driven as a pipeline that calls
    scale_model_input (diffusers' Kandinsky pipelines do not): for each timestep the scaled
    input, a model output (a fixed mix of the scaled input and a random draw, recorded), every
    noise draw of the step (randn_tensor patched, recorded) and the step's prev_sample. Then
    add_noise at the third timestep, with set_begin_index as the img2img pipelines call it."""
    import importlib

    import diffusers

    print("samplers")
    out_dir = FIXTURES / "samplers"
    out_dir.mkdir(parents=True, exist_ok=True)
    ref: dict[str, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(70)
    draws: list[torch.Tensor] = []

    def draw(shape, generator=None, device=None, dtype=None, **_):
        z = torch.randn(shape, generator=gen)
        draws.append(z)
        return z

    for name, (cls_name, overrides, base_name) in SAMPLER_CONFIGS.items():
        base_cls, base_cfg = SCHEDULER_CONFIGS[base_name]
        base = getattr(diffusers, base_cls).from_config(base_cfg)
        sched = getattr(diffusers, cls_name).from_config(base.config, **overrides)
        module = importlib.import_module(type(sched).__module__)
        module.randn_tensor = draw
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        sched.save_config(folder)
        for steps in SAMPLER_STEPS:
            key = f"{name}.{steps}"
            sched.set_timesteps(steps)
            timesteps = sched.timesteps.clone()
            ref[f"{key}.timesteps"] = timesteps.to(torch.float64)
            if hasattr(sched, "sigmas"):
                ref[f"{key}.sigmas"] = torch.as_tensor(sched.sigmas).to(torch.float64)
            ref[f"{key}.init_noise_sigma"] = torch.tensor([float(sched.init_noise_sigma)],
                                                          dtype=torch.float64)
            sample = torch.randn((2, 4, 3, 5), generator=gen) * float(sched.init_noise_sigma)
            ref[f"{key}.sample"] = sample.clone()
            for i, t in enumerate(timesteps):
                scaled = sched.scale_model_input(sample, t)
                model_output = 0.3 * scaled + 0.8 * torch.randn(sample.shape, generator=gen)
                draws.clear()
                out = sched.step(model_output, t, sample)
                ref[f"{key}.{i}.scaled"] = scaled.clone()
                ref[f"{key}.{i}.model_output"] = model_output
                assert len(draws) <= 1, f"{name}: {len(draws)} draws in one step"
                ref[f"{key}.{i}.noise"] = draws[0] if draws else torch.zeros(0)
                ref[f"{key}.{i}.prev_sample"] = out.prev_sample
                sample = out.prev_sample
            sched.set_timesteps(steps)
            x0 = torch.randn((2, 4, 3, 5), generator=gen)
            noise = torch.randn((2, 4, 3, 5), generator=gen)
            begin = 2 * sched.order
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(begin)
            ref[f"{key}.add_noise.original"] = x0
            ref[f"{key}.add_noise.noise"] = noise
            ref[f"{key}.add_noise.index"] = torch.tensor([begin])
            ref[f"{key}.add_noise.noised"] = sched.add_noise(
                x0, noise, sched.timesteps[begin:begin + 1])
    save_reference(ref, out_dir / "reference.safetensors")


# End to end: the samplers as the CLI's --scheduler builds them (class and overrides of the
# registry in kandinsky-pipeline/src/scheduler/registry.rs, on the decoder's own config).
E2E_SAMPLERS = {
    "dpm++2m": ("DPMSolverMultistepScheduler", {"solver_order": 2, "algorithm_type": "dpmsolver++"}),
    "dpm++2m-sde": ("DPMSolverMultistepScheduler",
                    {"solver_order": 2, "algorithm_type": "sde-dpmsolver++"}),
    "dpm++3m": ("DPMSolverMultistepScheduler", {"solver_order": 3, "algorithm_type": "dpmsolver++"}),
    "dpm++2s": ("DPMSolverSinglestepScheduler",
                {"solver_order": 2, "algorithm_type": "dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2-a": ("KDPM2AncestralDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
}
# (decoder, sampler, karras) runs; each at E2E_STEPS.
E2E_RUNS = [("22", name, False) for name in E2E_SAMPLERS] + [
    ("22", name, True) for name in ("dpm++2m", "dpm++2m-sde", "unipc", "euler", "heun", "dpm2-a",
                                    "lms")
] + [("21", name, karras) for name, karras in (("dpm++2m", True), ("unipc", False),
                                                ("euler-a", False), ("heun", True))]
E2E_STEPS = (4, 10)


def sampler_pipelines() -> None:
    """Every run of E2E_RUNS end to end through diffusers' KandinskyV22Pipeline ("22") or
    KandinskyPipeline ("21") on the small fixtures (64x64 images, guidance 4, initial latents
    given, every noise draw recorded), with the sampler built as `from_config` on the decoder's
    scheduler config. diffusers' Kandinsky pipelines never call `scale_model_input`, so the
    UNet's forward is wrapped to call it (identity for the variance-preserving samplers, whose
    runs are thus exactly the pipelines'; the division by sqrt(sigma^2 + 1) the Euler family
    needs), and step() is wrapped to drop the generator= argument KandinskyV22Pipeline passes
    and most of these samplers do not take. Writes fixtures/sampler_pipelines/reference.safetensors: per run
    `RUN.latents.I` after each step, `RUN.image`, and `RUN.image_f32_gap` (the larger of max |f32
    decode − f64 decode| of the final latents and max |decode change| for a 1e-6 relative change
    of them: the image's own float32 uncertainty), with RUN = decoder.sampler[.karras].steps."""
    import importlib
    import inspect

    import diffusers
    from diffusers import KandinskyPipeline, KandinskyV22Pipeline, UNet2DConditionModel, VQModel
    from diffusers.pipelines.kandinsky.text_encoder import MultilingualCLIP
    from transformers import XLMRobertaTokenizer

    print("sampler_pipelines")
    out_dir = FIXTURES / "sampler_pipelines"
    out_dir.mkdir(parents=True, exist_ok=True)
    movq = VQModel.from_pretrained(FIXTURES / "movq" / "movq").eval()
    movq64 = VQModel.from_pretrained(FIXTURES / "movq" / "movq").eval().double()
    tokenizer = XLMRobertaTokenizer.from_pretrained(FIXTURES / "tokenizers" / "xlmr")
    text_encoder = MultilingualCLIP.from_pretrained(FIXTURES / "pipeline21" / "text_encoder").eval()
    gen = torch.Generator().manual_seed(90)
    inputs = {
        "22": (torch.randn((1, 28), generator=gen), torch.randn((1, 28), generator=gen)),
        "21": (torch.randn((1, 20), generator=gen), torch.randn((1, 20), generator=gen)),
    }
    latents0 = torch.randn((1, 4, 8, 8), generator=gen)
    ref = {"latents": latents0, "image_embeds.22": inputs["22"][0],
           "negative_image_embeds.22": inputs["22"][1], "image_embeds.21": inputs["21"][0],
           "negative_image_embeds.21": inputs["21"][1]}
    draws: list[torch.Tensor] = []

    def draw(shape, generator=None, device=None, dtype=None, **_):
        z = torch.randn(shape, generator=gen)
        draws.append(z)
        return z

    for decoder, name, karras in E2E_RUNS:
        cls_name, overrides = E2E_SAMPLERS[name]
        base_cls, base_cfg = SCHEDULER_CONFIGS["ddpm" if decoder == "22" else "ddim"]
        base = getattr(diffusers, base_cls).from_config(base_cfg)
        extra = {"use_karras_sigmas": True} if karras else {}
        for steps in E2E_STEPS:
            sched = getattr(diffusers, cls_name).from_config(base.config, **overrides, **extra)
            importlib.import_module(type(sched).__module__).randn_tensor = draw
            if "generator" not in inspect.signature(sched.step).parameters:
                # KandinskyV22Pipeline passes generator= to step(), which UniPC, DEIS, PNDM,
                # Heun, DPM2 and LMS do not take: diffusers cannot run them as they are.
                sched.step = lambda *a, generator=None, _step=sched.step, **k: _step(*a, **k)
            unet = UNet2DConditionModel.from_pretrained(
                FIXTURES / ("unet_22" if decoder == "22" else "unet_21") / "unet").eval()
            forward = unet.forward

            def scaled_forward(sample, timestep, *args, _f=forward, _s=sched, **kwargs):
                return _f(_s.scale_model_input(sample, timestep), timestep, *args, **kwargs)

            unet.forward = scaled_forward
            run = f"{decoder}.{name}{'.karras' if karras else ''}.{steps}"
            seen: list[torch.Tensor] = []
            draws.clear()
            embeds, negative = inputs[decoder]
            common = dict(image_embeds=embeds, negative_image_embeds=negative, height=64,
                          width=64, num_inference_steps=steps, guidance_scale=4.0,
                          latents=latents0.clone(), output_type="pt")
            with torch.no_grad():
                if decoder == "22":
                    pipe = KandinskyV22Pipeline(unet=unet, scheduler=sched, movq=movq)
                    pipe.set_progress_bar_config(disable=True)

                    def on_step(_pipe, i, t, kwargs):
                        seen.append(kwargs["latents"].clone())
                        return kwargs

                    image = pipe(**common, callback_on_step_end=on_step).images
                else:
                    pipe = KandinskyPipeline(text_encoder=text_encoder, tokenizer=tokenizer,
                                             unet=unet, scheduler=sched, movq=movq)
                    pipe.set_progress_bar_config(disable=True)
                    image = pipe("a red cat", **common, callback_steps=1,
                                 callback=lambda i, t, l: seen.append(l.clone())).images
            ref[f"{run}.image"] = image
            # How well float32 itself can decode these latents: the random UNet drives them to
            # ~100, where the MoVQ amplifies rounding (PyTorch's own f32 decode then differs
            # from an f64 decode by up to ~1e-3 of the image's range).
            # Also how far the decode moves when the latents move by 1e-6 relative (float32's
            # reach after a few UNet passes; ours agree with these to ~1e-6).
            with torch.no_grad():
                final = seen[-1].double()
                exact = movq64.decode(final, force_not_quantize=True).sample
                z = torch.randn(final.shape, generator=torch.Generator().manual_seed(91))
                moved = movq64.decode(final * (1 + 1e-6 * z.double()),
                                      force_not_quantize=True).sample
            gap = max((image.double() - exact).abs().max(), (moved - exact).abs().max())
            ref[f"{run}.image_f32_gap"] = gap.reshape(1)
            ref.update({f"{run}.latents.{i}": z for i, z in enumerate(seen)})
            ref.update({f"{run}.noise.{i}": z for i, z in enumerate(draws)})
    save_reference(ref, out_dir / "reference.safetensors")


# --------------------------------------------------------------------------------------------
# End-to-end pipelines


def pipeline22() -> None:
    """KandinskyV22Pipeline (the 2.2 decoder) over the small UNet and MoVQ fixtures with the 2.2
    DDPM scheduler: 3 steps, guidance 4, a 128x192 image (16x24 latent), initial latents given,
    every step's noise recorded."""
    import diffusers.schedulers.scheduling_ddpm as ddpm_mod
    from diffusers import DDPMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

    print("pipeline22")
    unet = UNet2DConditionModel.from_pretrained(FIXTURES / "unet_22" / "unet").eval()
    movq = VQModel.from_pretrained(FIXTURES / "movq" / "movq").eval()
    scheduler = DDPMScheduler.from_pretrained(FIXTURES / "schedulers" / "ddpm")
    pipe = KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(60)
    image_embeds = torch.randn((1, 28), generator=gen)
    negative = torch.randn((1, 28), generator=gen)
    latents = torch.randn((1, 4, 16, 24), generator=gen)
    noises: list[torch.Tensor] = []

    def draw(shape, generator=None, device=None, dtype=None, **_):
        z = torch.randn(shape, generator=gen)
        noises.append(z)
        return z

    ddpm_mod.randn_tensor = draw
    steps: list[torch.Tensor] = []

    def on_step(_pipe, i, t, kwargs):
        steps.append(kwargs["latents"].clone())
        return kwargs

    with torch.no_grad():
        image = pipe(image_embeds=image_embeds, negative_image_embeds=negative, height=128,
                     width=192, num_inference_steps=3, guidance_scale=4.0, latents=latents,
                     output_type="pt", callback_on_step_end=on_step).images
    ref = {"image_embeds": image_embeds, "negative_image_embeds": negative, "latents": latents,
           "image": image}
    ref.update({f"noise.{i}": z for i, z in enumerate(noises)})
    ref.update({f"latents.{i}": z for i, z in enumerate(steps)})
    out_dir = FIXTURES / "pipeline22"
    out_dir.mkdir(parents=True, exist_ok=True)
    save_reference(ref, out_dir / "reference.safetensors")


def small_prior_pipeline(name: str, width: int, pipeline_class: str, seed: int) -> None:
    """A Kandinsky prior pipeline (`pipeline_class`, 2.1 or 2.2) over small components that fit
    together as the real ones do (CLIP text hidden = projection = prior embedding width = image
    projection = `width`; 77 tokens; a CLIP BPE cut to its first 300 merges), 3 UnCLIP steps,
    guidance 4, no negative prompt (so the negative embedding is the zero image's), initial
    latents given, noise recorded; the latents after each step where the pipeline reports them
    (2.2 only)."""
    import diffusers.schedulers.scheduling_unclip as unclip_mod
    import diffusers
    from diffusers import PriorTransformer, UnCLIPScheduler
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModelWithProjection,
                              CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection)

    print(name)
    root = FIXTURES / name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    # Tokenizer: the real CLIP BPE's bytes and first 300 merges.
    bpe = FIXTURES / "tokenizers" / "clip_bpe"
    merges = (bpe / "merges.txt").read_text().split("\n")[1:301]
    full = json.loads((bpe / "vocab.json").read_text())
    by_id = sorted(full, key=full.get)
    tokens = by_id[:512] + ["".join(m.split()) for m in merges] + ["<|startoftext|>",
                                                                   "<|endoftext|>"]
    tok_dir = root / "tokenizer"
    tok_dir.mkdir()
    (tok_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)},
                                                   ensure_ascii=False))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77,
         "pad_token": "<|endoftext|>", "bos_token": "<|startoftext|>",
         "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, indent=2) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    vocab = len(tokens)
    text = CLIPTextModelWithProjection(CLIPTextConfig(
        **{**CLIP_TEXT_SMALL, "vocab_size": vocab, "hidden_size": width, "projection_dim": width,
           "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "gelu"})).eval()
    randomize(text, seed=seed)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        **{**CLIP_VISION_SMALL, "image_size": 224, "patch_size": 32, "projection_dim": width})).eval()
    randomize(vision, seed=seed + 1)
    prior = PriorTransformer(**{**{k: v for k, v in PRIOR_SMALL.items() if not k.startswith("_")},
                                "embedding_dim": width, "num_embeddings": 77,
                                "embedding_proj_dim": None, "clip_embed_dim": None,
                                "num_attention_heads": 2, "attention_head_dim": width // 2}).eval()
    randomize(prior, seed=seed + 2)
    gen = torch.Generator().manual_seed(seed + 3)
    with torch.no_grad():
        for p in (prior.positional_embedding, prior.prd_embedding, prior.clip_mean):
            p.copy_(torch.randn(p.shape, generator=gen))
        prior.clip_std.copy_(0.5 + torch.rand(prior.clip_std.shape, generator=gen))
    scheduler = UnCLIPScheduler.from_pretrained(FIXTURES / "schedulers" / "unclip")
    processor = CLIPImageProcessor(**CLIP_IMAGE_PROCESSOR)
    pipe = getattr(diffusers, pipeline_class)(prior=prior, image_encoder=vision, text_encoder=text,
                                     tokenizer=tokenizer, scheduler=scheduler,
                                     image_processor=processor)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(root)
    # save_pretrained writes a tokenizer.json too; keep the published layout (vocab + merges).
    for extra in ("tokenizer.json", "special_tokens_map.json"):
        if (root / "tokenizer" / extra).exists():
            (root / "tokenizer" / extra).unlink()

    latents = torch.randn((1, width), generator=gen)
    noises: list[torch.Tensor] = []

    def draw(shape, generator=None, device=None, dtype=None, **_):
        z = torch.randn(shape, generator=gen)
        noises.append(z)
        return z

    unclip_mod.randn_tensor = draw
    steps: list[torch.Tensor] = []

    def on_step(_pipe, i, t, kwargs):
        steps.append(kwargs["latents"].clone())
        return kwargs

    prompt = "a red cat sitting on a windowsill"
    step_callback = {"callback_on_step_end": on_step} if "V22" in pipeline_class else {}
    with torch.no_grad():
        out = pipe(prompt, num_inference_steps=3, guidance_scale=4.0, latents=latents,
                   **step_callback)
    ref = {"latents": latents, "image_embeds": out.image_embeds,
           "negative_image_embeds": out.negative_image_embeds}
    ref.update({f"noise.{i}": z for i, z in enumerate(noises)})
    ref.update({f"latents.{i}": z for i, z in enumerate(steps)})
    save_reference(ref, root / "reference.safetensors")
    (root / "prompt.txt").write_text(prompt + "\n")


def prior_pipeline22() -> None:
    """The small 2.2 prior pipeline (32 wide) and a 2.2 decoder UNet that takes its embeddings."""
    small_prior_pipeline("prior_pipeline22", 32, "KandinskyV22PriorPipeline", seed=70)
    # A 2.2 decoder UNet that takes this prior's 32-wide embeddings (the small UNet fixture's
    # configuration otherwise), so that a whole text-to-image chain can run on the fixtures.
    from diffusers import UNet2DConditionModel

    folder = FIXTURES / "decoder_unet32" / "unet"
    if folder.parent.exists():
        shutil.rmtree(folder.parent)
    unet = UNet2DConditionModel(**unet_config({**UNET_FIXTURES["unet_22"],
                                               "encoder_hid_dim": 32})).eval()
    randomize(unet, seed=74)
    unet.save_pretrained(folder, safe_serialization=True)


def prior_pipeline21() -> None:
    """The small 2.1 prior pipeline (KandinskyPriorPipeline), 20 wide: its embeddings fit the
    small 2.1 UNet (cross-attention width 20), so that a whole 2.1 chain runs on the fixtures."""
    small_prior_pipeline("prior_pipeline21", 20, "KandinskyPriorPipeline", seed=90)


def pipeline21() -> None:
    """KandinskyPipeline (the 2.1 decoder) over the small UNet and MoVQ fixtures, a small
    MultilingualCLIP that fits them (hidden 12 = the UNet's encoder_hid_dim, projection 20 = its
    cross-attention width) with the XLM-R tokenizer fixture, and the 2.1 DDIM scheduler: 3 steps,
    guidance 4, a 128x192 image, initial latents given (DDIM with eta 0 draws no noise)."""
    from diffusers import DDIMScheduler, KandinskyPipeline, UNet2DConditionModel, VQModel
    from diffusers.pipelines.kandinsky.text_encoder import MCLIPConfig, MultilingualCLIP
    from transformers import XLMRobertaTokenizer

    print("pipeline21")
    root = FIXTURES / "pipeline21"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    tokenizer = XLMRobertaTokenizer.from_pretrained(FIXTURES / "tokenizers" / "xlmr")
    text_encoder = MultilingualCLIP(MCLIPConfig(**{
        **MCLIP_SMALL, "vocab_size": len(tokenizer), "hidden_size": 12, "num_attention_heads": 3,
        "intermediate_size": 20, "max_position_embeddings": 80, "transformerDimSize": 12,
        "imageDimSize": 20})).eval()
    randomize(text_encoder, seed=80)
    text_encoder.save_pretrained(root / "text_encoder", safe_serialization=True)
    unet = UNet2DConditionModel.from_pretrained(FIXTURES / "unet_21" / "unet").eval()
    movq = VQModel.from_pretrained(FIXTURES / "movq" / "movq").eval()
    scheduler = DDIMScheduler.from_pretrained(FIXTURES / "schedulers" / "ddim")
    pipe = KandinskyPipeline(text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                             scheduler=scheduler, movq=movq)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(81)
    image_embeds = torch.randn((1, 20), generator=gen)
    negative = torch.randn((1, 20), generator=gen)
    latents = torch.randn((1, 4, 16, 24), generator=gen)
    steps: list[torch.Tensor] = []

    def on_step(i, t, latents):  # the 2.1 pipeline's older callback, after each step
        steps.append(latents.clone())

    prompt = "Красивый закат над морем"
    with torch.no_grad():
        image = pipe(prompt, image_embeds=image_embeds, negative_image_embeds=negative,
                     height=128, width=192, num_inference_steps=3, guidance_scale=4.0,
                     latents=latents, output_type="pt", callback=on_step, callback_steps=1).images
    ref = {"image_embeds": image_embeds, "negative_image_embeds": negative, "latents": latents,
           "image": image}
    ref.update({f"latents.{i}": z for i, z in enumerate(steps)})
    save_reference(ref, root / "reference.safetensors")
    (root / "prompt.txt").write_text(prompt + "\n")


def source_image(width: int, height: int, seed: int):
    """A smooth RGB test picture (gradients and a few blobs) as a PIL image."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin((x + y) / 9.0)], axis=-1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(5, 20)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - blob) + blob * rng.uniform(0, 1, size=3)
    return Image.fromarray((img * 255).round().clip(0, 255).astype(np.uint8))


class NoiseRecorder:
    """Replaces `randn_tensor` in the given modules by draws from one generator, recording them."""

    def __init__(self, seed: int, *modules):
        self.gen = torch.Generator().manual_seed(seed)
        self.draws: list[torch.Tensor] = []
        for module in modules:
            module.randn_tensor = self

    def __call__(self, shape, generator=None, device=None, dtype=None, **_):
        z = torch.randn(shape, generator=self.gen)
        self.draws.append(z)
        return z

    def save_into(self, ref: dict) -> None:
        ref.update({f"noise.{i}": z for i, z in enumerate(self.draws)})


def modes() -> None:
    """Decoder modes with the small UNet/MoVQ fixtures on a 64x64 source picture
    (fixtures/modes/source.png, passed as a PIL image so that the pipelines' own preprocessing
    runs), guidance 4, every noise draw recorded:
    - img2img22: KandinskyV22Img2ImgPipeline, DDPM, 6 steps at strength 0.5 (3 run);
    - img2img21: KandinskyImg2ImgPipeline, DDIM, 6 steps at strength 0.5 (its own noising at
      t = 498), the small MultilingualCLIP and XLM-R tokenizer of pipeline21;
    - controlnet22: KandinskyV22ControlnetPipeline, DDPM, 3 steps, a random hint in [0, 1], on a
      ControlNet UNet written here (unet_22_controlnet32: 32-wide embeddings like the small 2.2
      prior's, weights rounded to fp16 and stored as the fp16 variant only)."""
    import diffusers.pipelines.kandinsky.pipeline_kandinsky_img2img as img2img21_mod
    import diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_controlnet as control_mod
    import diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_img2img as img2img22_mod
    import diffusers.schedulers.scheduling_ddpm as ddpm_mod
    from diffusers import (DDIMScheduler, DDPMScheduler, KandinskyImg2ImgPipeline,
                           KandinskyV22ControlnetPipeline, KandinskyV22Img2ImgPipeline,
                           UNet2DConditionModel, VQModel)
    from diffusers.pipelines.kandinsky.text_encoder import MultilingualCLIP
    from transformers import XLMRobertaTokenizer

    print("modes")
    root = FIXTURES / "modes"
    root.mkdir(parents=True, exist_ok=True)
    source = source_image(64, 64, seed=100)
    source.save(root / "source.png")
    movq = VQModel.from_pretrained(FIXTURES / "movq" / "movq").eval()
    gen = torch.Generator().manual_seed(101)
    embeds22 = torch.randn((1, 28), generator=gen), torch.randn((1, 28), generator=gen)
    embeds21 = torch.randn((1, 20), generator=gen), torch.randn((1, 20), generator=gen)
    common = dict(height=64, width=64, guidance_scale=4.0, output_type="pt")

    unet = UNet2DConditionModel.from_pretrained(FIXTURES / "unet_22" / "unet").eval()
    pipe = KandinskyV22Img2ImgPipeline(
        unet=unet, movq=movq, scheduler=DDPMScheduler.from_pretrained(FIXTURES / "schedulers" / "ddpm"))
    pipe.set_progress_bar_config(disable=True)
    noise = NoiseRecorder(102, img2img22_mod, ddpm_mod)
    with torch.no_grad():
        image = pipe(image=source, image_embeds=embeds22[0], negative_image_embeds=embeds22[1],
                     num_inference_steps=6, strength=0.5, **common).images
    ref = {"image_embeds": embeds22[0], "negative_image_embeds": embeds22[1], "image": image}
    noise.save_into(ref)
    save_reference(ref, root / "img2img22.safetensors")

    tokenizer = XLMRobertaTokenizer.from_pretrained(FIXTURES / "tokenizers" / "xlmr")
    text_encoder = MultilingualCLIP.from_pretrained(FIXTURES / "pipeline21" / "text_encoder").eval()
    unet = UNet2DConditionModel.from_pretrained(FIXTURES / "unet_21" / "unet").eval()
    pipe = KandinskyImg2ImgPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, movq=movq,
        scheduler=DDIMScheduler.from_pretrained(FIXTURES / "schedulers" / "ddim"))
    pipe.set_progress_bar_config(disable=True)
    noise = NoiseRecorder(103, img2img21_mod)
    with torch.no_grad():
        image = pipe("a red cat", image=source, image_embeds=embeds21[0],
                     negative_image_embeds=embeds21[1], num_inference_steps=6, strength=0.5,
                     **common).images
    ref = {"image_embeds": embeds21[0], "negative_image_embeds": embeds21[1], "image": image}
    noise.save_into(ref)
    save_reference(ref, root / "img2img21.safetensors")

    folder = FIXTURES / "unet_22_controlnet32" / "unet"
    if folder.parent.exists():
        shutil.rmtree(folder.parent)
    unet = UNet2DConditionModel(**unet_config({**UNET_FIXTURES["unet_22_controlnet"],
                                               "encoder_hid_dim": 32})).eval()
    randomize(unet, seed=105)
    unet.half().save_pretrained(folder, safe_serialization=True, variant="fp16")
    unet = unet.float()
    embeds32 = torch.randn((1, 32), generator=gen), torch.randn((1, 32), generator=gen)
    pipe = KandinskyV22ControlnetPipeline(
        unet=unet, movq=movq, scheduler=DDPMScheduler.from_pretrained(FIXTURES / "schedulers" / "ddpm"))
    pipe.set_progress_bar_config(disable=True)
    hint = torch.rand((1, 3, 64, 64), generator=gen)
    noise = NoiseRecorder(104, control_mod, ddpm_mod)
    with torch.no_grad():
        image = pipe(image_embeds=embeds32[0], negative_image_embeds=embeds32[1], hint=hint,
                     num_inference_steps=3, **common).images
    ref = {"image_embeds": embeds32[0], "negative_image_embeds": embeds32[1], "hint": hint,
           "image": image}
    noise.save_into(ref)
    save_reference(ref, root / "controlnet22.safetensors")


def inpainting() -> None:
    """Inpainting with the small fixtures on the 64x64 source picture and an 80x80 grey mask
    (white ellipse = repaint; fixtures/modes/mask.png, so the reference resizes it with
    Lanczos), guidance 4, 3 steps, every noise draw recorded; the processed keep mask is saved
    too:
    - inpaint21: KandinskyInpaintPipeline, unet_21_inpaint, DDIM, the small MultilingualCLIP;
    - inpaint22: KandinskyV22InpaintPipeline, DDPM, a 9-channel 2.2 UNet written here
      (unet_22_inpaint: 32-wide embeddings like the small 2.2 prior's, weights rounded to fp16
      and stored as the fp16 variant only)."""
    import numpy as np
    from PIL import Image

    import diffusers.pipelines.kandinsky.pipeline_kandinsky_inpaint as inpaint21_mod
    import diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_inpainting as inpaint22_mod
    import diffusers.schedulers.scheduling_ddpm as ddpm_mod
    from diffusers import (DDIMScheduler, DDPMScheduler, KandinskyInpaintPipeline,
                           KandinskyV22InpaintPipeline, UNet2DConditionModel, VQModel)
    from diffusers.pipelines.kandinsky.text_encoder import MultilingualCLIP
    from transformers import XLMRobertaTokenizer

    print("inpainting")
    root = FIXTURES / "modes"
    root.mkdir(parents=True, exist_ok=True)
    source = source_image(64, 64, seed=100)
    y, x = np.mgrid[0:80, 0:80]
    ellipse = ((x - 46) / 22.0) ** 2 + ((y - 34) / 15.0) ** 2 <= 1.0
    mask = Image.fromarray((ellipse * 255).astype(np.uint8), mode="L")
    mask.save(root / "mask.png")
    keep, _ = inpaint22_mod.prepare_mask_and_masked_image(source, mask, 64, 64)
    movq = VQModel.from_pretrained(FIXTURES / "movq" / "movq").eval()
    gen = torch.Generator().manual_seed(110)
    embeds22 = torch.randn((1, 32), generator=gen), torch.randn((1, 32), generator=gen)
    embeds21 = torch.randn((1, 20), generator=gen), torch.randn((1, 20), generator=gen)
    common = dict(image=source, mask_image=mask, height=64, width=64, guidance_scale=4.0,
                  num_inference_steps=3, output_type="pt")

    tokenizer = XLMRobertaTokenizer.from_pretrained(FIXTURES / "tokenizers" / "xlmr")
    text_encoder = MultilingualCLIP.from_pretrained(FIXTURES / "pipeline21" / "text_encoder").eval()
    unet = UNet2DConditionModel.from_pretrained(FIXTURES / "unet_21_inpaint" / "unet").eval()
    pipe = KandinskyInpaintPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, movq=movq,
        scheduler=DDIMScheduler.from_pretrained(FIXTURES / "schedulers" / "ddim"))
    pipe.set_progress_bar_config(disable=True)
    noise = NoiseRecorder(111, inpaint21_mod)
    with torch.no_grad():
        image = pipe("a red cat", image_embeds=embeds21[0], negative_image_embeds=embeds21[1],
                     **common).images
    ref = {"image_embeds": embeds21[0], "negative_image_embeds": embeds21[1], "image": image,
           "keep": keep}
    noise.save_into(ref)
    save_reference(ref, root / "inpaint21.safetensors")

    folder = FIXTURES / "unet_22_inpaint" / "unet"
    if folder.parent.exists():
        shutil.rmtree(folder.parent)
    unet = UNet2DConditionModel(**unet_config({**UNET_FIXTURES["unet_22"], "in_channels": 9,
                                               "encoder_hid_dim": 32})).eval()
    randomize(unet, seed=114)  # seed 112 gave latents whose MoVQ decode amplifies f32 rounding ~2e4x
    unet.half().save_pretrained(folder, safe_serialization=True, variant="fp16")
    unet = unet.float()
    pipe = KandinskyV22InpaintPipeline(
        unet=unet, movq=movq, scheduler=DDPMScheduler.from_pretrained(FIXTURES / "schedulers" / "ddpm"))
    pipe.set_progress_bar_config(disable=True)
    noise = NoiseRecorder(113, inpaint22_mod, ddpm_mod)
    steps: list[torch.Tensor] = []

    def on_step(_pipe, i, t, kwargs):
        steps.append(kwargs["latents"].clone())
        return kwargs

    with torch.no_grad():
        image = pipe(image_embeds=embeds22[0], negative_image_embeds=embeds22[1],
                     callback_on_step_end=on_step, **common).images
    ref = {"image_embeds": embeds22[0], "negative_image_embeds": embeds22[1], "image": image,
           "keep": keep}
    ref.update({f"latents.{i}": z for i, z in enumerate(steps)})
    noise.save_into(ref)
    save_reference(ref, root / "inpaint22.safetensors")


def reduced_modes() -> None:
    """Image-to-image and inpainting (2.2) from a source picture and a mask larger than the
    64x64 output, so that the pipelines' Pillow resizes reduce them (issue 22): a 157x139 source
    (fixtures/modes/source_large.png: BICUBIC with reducing_gap=1 first box-averages it by 2) and
    a 200x200 mask (mask_large.png: LANCZOS over a 3.1x shrink), with the small fixtures
    (unet_22; unet_22_inpaint, read from its fp16 files), guidance 4, every noise draw recorded:
    - img2img22_reduced: KandinskyV22Img2ImgPipeline, DDPM, 6 steps at strength 0.5;
    - inpaint22_reduced: KandinskyV22InpaintPipeline, DDPM, 3 steps, with the processed keep
      mask and the latents after every step."""
    import numpy as np
    from PIL import Image

    import diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_img2img as img2img22_mod
    import diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_inpainting as inpaint22_mod
    import diffusers.schedulers.scheduling_ddpm as ddpm_mod
    from diffusers import (DDPMScheduler, KandinskyV22Img2ImgPipeline,
                           KandinskyV22InpaintPipeline, UNet2DConditionModel, VQModel)

    print("reduced modes")
    root = FIXTURES / "modes"
    source = source_image(157, 139, seed=130)
    source.save(root / "source_large.png")
    y, x = np.mgrid[0:200, 0:200]
    ellipse = ((x - 115) / 55.0) ** 2 + ((y - 85) / 38.0) ** 2 <= 1.0
    mask = Image.fromarray((ellipse * 255).astype(np.uint8), mode="L")
    mask.save(root / "mask_large.png")
    movq = VQModel.from_pretrained(FIXTURES / "movq" / "movq").eval()
    gen = torch.Generator().manual_seed(131)
    embeds28 = torch.randn((1, 28), generator=gen), torch.randn((1, 28), generator=gen)
    embeds32 = torch.randn((1, 32), generator=gen), torch.randn((1, 32), generator=gen)
    common = dict(height=64, width=64, guidance_scale=4.0, output_type="pt")
    ddpm = DDPMScheduler.from_pretrained(FIXTURES / "schedulers" / "ddpm")

    unet = UNet2DConditionModel.from_pretrained(FIXTURES / "unet_22" / "unet").eval()
    pipe = KandinskyV22Img2ImgPipeline(unet=unet, movq=movq, scheduler=ddpm)
    pipe.set_progress_bar_config(disable=True)
    noise = NoiseRecorder(132, img2img22_mod, ddpm_mod)
    with torch.no_grad():
        image = pipe(image=source, image_embeds=embeds28[0], negative_image_embeds=embeds28[1],
                     num_inference_steps=6, strength=0.5, **common).images
    ref = {"image_embeds": embeds28[0], "negative_image_embeds": embeds28[1], "image": image}
    noise.save_into(ref)
    save_reference(ref, root / "img2img22_reduced.safetensors")

    keep, _ = inpaint22_mod.prepare_mask_and_masked_image(source, mask, 64, 64)
    unet = UNet2DConditionModel.from_pretrained(
        FIXTURES / "unet_22_inpaint" / "unet", variant="fp16").float().eval()
    pipe = KandinskyV22InpaintPipeline(unet=unet, movq=movq, scheduler=ddpm)
    pipe.set_progress_bar_config(disable=True)
    noise = NoiseRecorder(133, inpaint22_mod, ddpm_mod)
    steps: list[torch.Tensor] = []

    def on_step(_pipe, i, t, kwargs):
        steps.append(kwargs["latents"].clone())
        return kwargs

    with torch.no_grad():
        image = pipe(image=source, mask_image=mask, image_embeds=embeds32[0],
                     negative_image_embeds=embeds32[1], num_inference_steps=3,
                     callback_on_step_end=on_step, **common).images
    ref = {"image_embeds": embeds32[0], "negative_image_embeds": embeds32[1], "image": image,
           "keep": keep}
    ref.update({f"latents.{i}": z for i, z in enumerate(steps)})
    noise.save_into(ref)
    save_reference(ref, root / "inpaint22_reduced.safetensors")


def pattern_image(width: int, height: int, seed: int):
    """A (height, width, 3) uint8 test pattern: gradients plus hashed noise, computed with
    32-bit integer arithmetic so that the Rust tests make the same bytes
    (kandinsky-pipeline/tests/resize.rs, `pattern`)."""
    import numpy as np

    m = 0xFFFFFFFF
    y, x, c = np.meshgrid(np.arange(height, dtype=np.uint64), np.arange(width, dtype=np.uint64),
                          np.arange(3, dtype=np.uint64), indexing="ij")
    h = ((x * 73856093) ^ (y * 19349663) ^ (c * 83492791) ^ np.uint64((seed * 2654435761) & m)) & m
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0x5BD1E995)) & m
    h ^= h >> np.uint64(15)
    noise = (h & np.uint64(63)).astype(np.int64)
    grad = (x.astype(np.int64) * 160) // width + (y.astype(np.int64) * 96) // height
    return np.clip(grad + noise - 32 + c.astype(np.int64) * 10, 0, 255).astype(np.uint8)


def write_png16(path: Path, rgb16) -> None:
    """A 16-bit RGB PNG (Pillow cannot write one)."""
    import struct
    import zlib

    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    path.write_bytes(png + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def resize_corpus() -> None:
    """Pillow's `Image.resize` on a corpus, for the byte-identical resize tests
    (kandinsky-pipeline/tests/resize.rs), in fixtures/resize/:
    - pattern sources (`pattern_image`, not stored) of many sizes, up- and downscaled (by 1.5,
      2, 3.7, 8; non-square, odd, 1-pixel sides) with BOX, BICUBIC and LANCZOS, without and
      with reducing_gap=1 (and 2 once);
    - PNG sources as users have them, read as diffusers' `load_image` reads them (EXIF
      transpose, convert("RGB")): RGBA, grey, 16-bit RGB, the modes' photo;
    corpus.safetensors holds each case's output bytes (`{name}`: (H, W, 3) uint8) and cases.json
    the cases."""
    import json

    import numpy as np
    from PIL import Image, ImageOps
    from safetensors.numpy import save_file

    print("resize corpus")
    root = FIXTURES / "resize"
    root.mkdir(parents=True, exist_ok=True)
    filters = {"box": Image.BOX, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
    sizes = [
        ((64, 64), (128, 128)), ((97, 61), (64, 40)), ((128, 96), (64, 48)),
        ((300, 200), (81, 54)), ((512, 384), (64, 48)), ((64, 128), (64, 64)),
        ((13, 1), (5, 1)), ((1, 9), (1, 4)), ((1, 1), (7, 5)), ((31, 17), (45, 29)),
        ((100, 75), (99, 75)), ((128, 128), (128, 64)), ((333, 101), (37, 50)),
        ((1001, 777), (64, 64)), ((640, 480), (100, 75)), ((75, 100), (64, 64)),
    ]
    cases, outputs = [], {}

    def add(name: str, source: dict, image, target, filt: str, gap):
        out = image.resize(target, filters[filt], reducing_gap=gap)
        outputs[name] = np.ascontiguousarray(np.array(out.convert("RGB")))
        cases.append({"name": name, "source": source, "width": target[0], "height": target[1],
                      "filter": filt, "reducing_gap": gap})

    for i, ((w, h), target) in enumerate(sizes):
        image = Image.fromarray(pattern_image(w, h, seed=i))
        for filt in filters:
            for gap in (None, 1.0):
                add(f"pattern{i}.{filt}.{gap}", {"pattern": [w, h, i]}, image, target, filt, gap)
    add("pattern4.bicubic.2.0", {"pattern": [512, 384, 4]},
        Image.fromarray(pattern_image(512, 384, seed=4)), (64, 48), "bicubic", 2.0)

    rng = np.random.default_rng(120)
    rgba = np.concatenate([pattern_image(150, 100, seed=50),
                           rng.integers(0, 256, (100, 150, 1), dtype=np.uint8)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(root / "rgba.png")
    Image.fromarray(pattern_image(90, 70, seed=51)[..., 0], mode="L").save(root / "grey.png")
    rgb16 = rng.integers(0, 65536, (80, 120, 3), dtype=np.uint16)
    write_png16(root / "rgb16.png", rgb16)
    shutil.copy(FIXTURES / "modes" / "source.png", root / "photo.png")
    for file, target in [("rgba.png", (64, 64)), ("grey.png", (40, 30)), ("rgb16.png", (64, 40)),
                         ("photo.png", (160, 96)), ("photo.png", (30, 20))]:
        image = ImageOps.exif_transpose(Image.open(root / file)).convert("RGB")
        stem = file.removesuffix(".png")
        for filt in ("bicubic", "lanczos"):
            for gap in (None, 1.0):
                add(f"{stem}.{target[0]}x{target[1]}.{filt}.{gap}", {"png": file}, image, target,
                    filt, gap)
    save_file(outputs, str(root / "corpus.safetensors"))
    (root / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")


def prior_modes() -> None:
    """Prior modes on the small 2.2 prior pipeline (prior_pipeline22) and the 64x64 source
    picture, every noise draw recorded:
    - fusion22: interpolate(["a red cat", picture], [0.3, 0.7]), 3 steps, guidance 4;
    - emb2emb22: KandinskyV22PriorEmb2EmbPipeline("a red cat", picture), 6 steps at strength
      0.5, guidance 4."""
    import diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_prior as prior_mod
    import diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_prior_emb2emb as emb2emb_mod
    import diffusers.schedulers.scheduling_unclip as unclip_mod
    from diffusers import KandinskyV22PriorEmb2EmbPipeline, KandinskyV22PriorPipeline

    print("prior_modes")
    root = FIXTURES / "modes"
    source = source_image(64, 64, seed=100)
    pipe = KandinskyV22PriorPipeline.from_pretrained(FIXTURES / "prior_pipeline22")
    pipe.set_progress_bar_config(disable=True)
    noise = NoiseRecorder(120, prior_mod, unclip_mod)
    with torch.no_grad():
        out = pipe.interpolate(["a red cat", source], [0.3, 0.7], num_inference_steps=3,
                               guidance_scale=4.0)
    # The last prior run (on the negative prompt "") is discarded by the reference: keep only
    # the draws of the text item (latents + 2 step noises).
    ref = {"image_embeds": out.image_embeds, "negative_image_embeds": out.negative_image_embeds}
    noise.draws = noise.draws[:3]
    noise.save_into(ref)
    save_reference(ref, root / "fusion22.safetensors")

    pipe = KandinskyV22PriorEmb2EmbPipeline.from_pretrained(FIXTURES / "prior_pipeline22")
    pipe.set_progress_bar_config(disable=True)
    noise = NoiseRecorder(121, emb2emb_mod, unclip_mod)
    with torch.no_grad():
        out = pipe("a red cat", image=source, strength=0.5, num_inference_steps=6,
                   guidance_scale=4.0)
    ref = {"image_embeds": out.image_embeds, "negative_image_embeds": out.negative_image_embeds}
    noise.save_into(ref)
    save_reference(ref, root / "emb2emb22.safetensors")


def unet_large_map() -> None:
    """The unet_22 fixture's model on a 32×24 latent: its first level then runs at 768 positions,
    above the 16×16 where our CPU convolutions switch from the small-map product to Winograd's
    F(2×2, 3×3) (the other fixtures stay below it)."""
    from diffusers import UNet2DConditionModel

    print("unet_large_map")
    model = UNet2DConditionModel.from_pretrained(FIXTURES / "unet_22" / "unet").eval()
    gen = torch.Generator().manual_seed(131)
    batch = 2
    sample = torch.randn((batch, 4, 32, 24), generator=gen)
    timestep = torch.tensor([999.0, 17.0])
    image_embeds = torch.randn((batch, model.config.encoder_hid_dim), generator=gen)
    ref = {"sample": sample, "timestep": timestep, "image_embeds": image_embeds}
    levels = len(model.config.block_out_channels)
    names = (["time_embedding", "add_embedding", "encoder_hid_proj", "conv_in"]
             + [f"down_blocks.{i}" for i in range(levels)] + ["mid_block"]
             + [f"up_blocks.{i}" for i in range(levels)] + ["conv_norm_out", "conv_out"])
    with torch.no_grad():
        store, handles = capture(model, names)
        ref["output"] = model(sample, timestep, encoder_hidden_states=None,
                              added_cond_kwargs={"image_embeds": image_embeds}).sample
        for h in handles:
            h.remove()
        ref.update(store)
    out_dir = FIXTURES / "unet_22_large_map"
    out_dir.mkdir(parents=True, exist_ok=True)
    save_reference(ref, out_dir / "reference.safetensors")


COMPONENTS = {"movq": movq, "unet": unet, "unet_large_map": unet_large_map, "prior": prior, "clip": clip, "tokenizers": tokenizers,
              "preprocessing": preprocessing, "schedulers": schedulers, "pipeline22": pipeline22,
              "prior_pipeline22": prior_pipeline22, "prior_pipeline21": prior_pipeline21,
              "pipeline21": pipeline21, "modes": modes, "resize": resize_corpus,
              "reduced_modes": reduced_modes, "samplers": samplers,
              "sampler_pipelines": sampler_pipelines,
              "inpainting": inpainting, "prior_modes": prior_modes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("components", nargs="*", choices=[*COMPONENTS, []], help="default: all")
    parser.add_argument("--unet-full", metavar="DIR",
                        help="only write a real-size random 2.2 UNet folder to DIR (~5 GB)")
    parser.add_argument("--pipeline22-full", metavar="DIR",
                        help="only write real-size random 2.2 prior and decoder repos to DIR (~20 GB)")
    args = parser.parse_args()
    if args.unet_full:
        unet_full(args.unet_full)
        return
    if args.pipeline22_full:
        pipeline22_full(args.pipeline22_full)
        return
    for name in args.components or COMPONENTS:
        COMPONENTS[name]()


if __name__ == "__main__":
    main()

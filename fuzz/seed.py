"""Writes the seed corpus of every fuzz target (fuzz/corpus/<target>/) from the fixtures.

Run with the reference environment: tools/reference/.venv/bin/python fuzz/seed.py
"""
import io, json, pathlib, struct

import numpy as np
from PIL import Image
from safetensors.numpy import save

ROOT = pathlib.Path(__file__).resolve().parent
FIX = ROOT.parent / "fixtures"


def put(target, name, data):
    d = ROOT / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# safetensors: what a Linear 2 -> 3 loads, in each dtype, and near misses.
w = np.arange(6, dtype=np.float32).reshape(3, 2)
b = np.ones(3, dtype=np.float32)
for dt in ["float32", "float16", "float64"]:
    put("safetensors", f"linear_{dt}", save({"weight": w.astype(dt), "bias": b.astype(dt)}))
put("safetensors", "linear_bf16_like", save({"weight": w.astype(np.uint16), "bias": b.astype(np.uint16)}))
put("safetensors", "wrong_shape", save({"weight": w.T.copy(), "bias": b}))
put("safetensors", "extra_key", save({"weight": w, "bias": b, "other": b}))
put("safetensors", "metadata", save({"weight": w, "bias": b}, metadata={"format": "pt"}))

# configs: the first byte picks the kind.
KINDS = [
    (0, ["decoder_unet32/unet", "unet_21/unet", "unet_22_inpaint/unet", "unet_22_controlnet/unet"]),
    (1, ["movq/movq"]),
    (2, ["prior_pipeline22/prior", "prior_pipeline21/prior"]),
    (3, ["prior_pipeline22/text_encoder", "clip_text_g"]),
    (4, ["prior_pipeline22/image_encoder", "clip_vision"]),
    (5, ["mclip"]),
]
for kind, dirs in KINDS:
    for d in dirs:
        for p in (FIX / d).rglob("config.json"):
            put("configs", f"{kind}_{p.parent.relative_to(FIX)}".replace("/", "_"), bytes([kind]) + p.read_bytes())
put("configs", "6_image_processor", b"\x06" + (FIX / "prior_pipeline22/image_processor/preprocessor_config.json").read_bytes())
schedulers = sorted(FIX.rglob("scheduler_config.json"))
for p in schedulers:
    put("configs", f"7_{p.parent.relative_to(FIX)}".replace("/", "_"), b"\x07" + p.read_bytes())

# scheduler: choice byte (0: its class; n: sampler n-1, Karras above 128), steps byte, config.
for i, p in enumerate(schedulers):
    for choice in [0, 1 + i % 14, 130 + i % 14]:
        put("scheduler", f"{choice}_{p.parent.relative_to(FIX)}".replace("/", "_"), bytes([choice, 10 + i]) + p.read_bytes())

# tokenizer: kind byte (0 tokenizer.json, 1 CLIP BPE), files split at 0xFF, config, prompt.
tok = FIX / "prior_pipeline22/tokenizer"
put("tokenizer", "clip_bpe", b"\x01" + (tok / "vocab.json").read_bytes() + b"\xff" + (tok / "merges.txt").read_bytes()
    + b"\xff" + (tok / "tokenizer_config.json").read_bytes() + b"\xff" + "a red cat, 猫".encode())
small_json = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
    "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
    "model": {"type": "WordLevel", "vocab": {"<s>": 0, "<pad>": 1, "</s>": 2, "a": 3, "cat": 4, "<unk>": 5}, "unk_token": "<unk>"},
}
put("tokenizer", "word_level_json", b"\x00" + json.dumps(small_json).encode() + b"\xff\xff"
    + json.dumps({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "model_max_length": 8}).encode() + b"\xffa cat")

# image: the fixtures' PNGs and small PNG/JPEG/WebP files of each colour type.
for name in ["source.png", "mask.png"]:
    put("image", name, (FIX / "modes" / name).read_bytes())
rng = np.random.default_rng(0)
for mode in ["RGB", "RGBA", "L", "LA", "P", "I;16"]:
    arr = rng.integers(0, 255, (9, 7, 4)).astype(np.uint8)
    img = Image.fromarray(arr, "RGBA").convert(mode if mode != "I;16" else "I")
    if mode == "I;16":
        img = img.convert("I;16")
    for fmt in ["PNG", "JPEG", "WEBP"]:
        try:
            buf = io.BytesIO()
            img.save(buf, fmt)
            put("image", f"{mode.replace(';', '')}.{fmt.lower()}", buf.getvalue())
        except (OSError, ValueError, KeyError):
            pass
exif = Image.fromarray(rng.integers(0, 255, (5, 3, 3)).astype(np.uint8))
buf = io.BytesIO()
e = exif.getexif(); e[0x0112] = 6
exif.save(buf, "JPEG", exif=e.tobytes())
put("image", "exif_rotated.jpeg", buf.getvalue())

# cli_args: argument vectors split at NULs (image paths name fixtures).
src = "fixtures/modes/source.png"
mask = "fixtures/modes/mask.png"
for i, args in enumerate([
    ["generate", "--prompt", "a red cat", "--width", "512", "--height", "768", "--steps", "30"],
    ["generate", "--prompt", "x", "--scheduler", "dpm++2m", "--karras", "--num-images", "4", "--seed", "7"],
    ["generate", "--prompt", "x", "--guidance", "7.5", "--prior-guidance", "1", "--model", "2.1"],
    ["img2img", "--prompt", "oil", "--image", src, "--strength", "0.4"],
    ["inpaint", "--prompt", "hat", "--image", src, "--mask", mask],
    ["outpaint", "--prompt", "sea", "--image", src, "--extend", "64,0,64,0"],
    ["fuse", "--item", "text:a cat", "--item", f"image:{src}", "--weights", "0.3,0.7"],
    ["variation", "--image", src, "--num-images", "2"],
    ["controlnet", "--prompt", "x", "--hint", src, "--image", src, "--strength", "0.5"],
    ["emb2emb", "--prompt", "x", "--image", src, "--strength", "0.3", "--prior-scheduler", "unipc"],
]):
    put("cli_args", f"args_{i}", "\0".join(args))

# zero_cache: the width expected, then an entry.
def entry(width, values):
    return b"KZE1" + struct.pack("<I", width) + np.asarray(values, "<f4").tobytes()
put("zero_cache", "valid", struct.pack("<H", 4) + entry(4, [0.5, -1, 2, 0]))
put("zero_cache", "wrong_width", struct.pack("<H", 3) + entry(4, [0.5, -1, 2, 0]))
put("zero_cache", "nan", struct.pack("<H", 2) + entry(2, [float("nan"), 1]))

# server_request: job API bodies (images are the small PNG fixture, base64).
import base64
png = base64.b64encode((FIX / "modes/source.png").read_bytes()).decode()
mask = base64.b64encode((FIX / "modes/mask.png").read_bytes()).decode()
for i, body in enumerate([
    {"prompt": "a red cat", "width": 512, "height": 768, "steps": 30, "seed": 1},
    {"prompt": "x", "sampler": "dpm++2m", "karras": True, "num_images": 2, "guidance": 7.5},
    {"mode": "img2img", "prompt": "oil", "image": png, "strength": 0.4},
    {"mode": "inpaint", "prompt": "hat", "image": png, "mask": mask},
    {"mode": "outpaint", "prompt": "sea", "image": png, "extend": [64, 0, 64, 0]},
    {"mode": "fusion", "items": [{"text": "a cat", "weight": 0.3}, {"image": png, "weight": 0.7}]},
    {"mode": "variation", "image": "data:image/png;base64," + png},
    {"mode": "controlnet", "prompt": "x", "hint": png, "image": png, "strength": 0.5},
    {"mode": "emb2emb", "prompt": "x", "image": png, "prior_sampler": "unipc"},
]):
    put("server_request", f"body_{i}", json.dumps(body))

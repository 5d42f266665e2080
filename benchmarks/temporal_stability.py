"""Temporal stability of per-frame style swap on a static-camera clip.

    python benchmarks/temporal_stability.py                       # CPU defaults (below)
    python benchmarks/temporal_stability.py --size 256 --iters 100 --frames 16 --method optimize

The clip is synthesised, so the figure is reproducible: a still picture (the bundled cat photo,
``--size`` px) seen by a static camera with sensor noise, i.e. every frame is the same image plus
independent Gaussian noise of ``--noise`` (in 0-255 units), rounded to 8 bits. Every frame is
stylised independently with one :class:`~styleswap_ext.pipeline.StyleBank` (The Starry Night).

Reported (0-255 units, mean over pixels, channels and the T-1 frame pairs):

* ``input_change``  = mean |x_t - x_(t-1)| of the input frames;
* ``output_change`` = mean |y_t - y_(t-1)| of the stylised frames;
* ``ratio`` = output_change / input_change (1 = the stylisation adds no flicker of its own);
* ``patch_flip``   = the fraction of relu3_1 positions whose chosen style patch changes between
  consecutive frames (the swap's own contribution to flicker).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # this tree's styleswap_ext, not another installed copy
DEFAULT_VGG = REPO.parent / "shared" / "weights" / "vgg19_conv1_1-conv3_1_torchvision.pth"


def synth_clip(size: int, frames: int, noise: float, seed: int = 0) -> list:
    from styleswap_ext import image_io

    base = image_io.resize_longest(image_io.load_image(REPO / "styleswap_ext" / "assets" / "cat.jpg"), size)
    base = np.asarray(base, np.float32)
    rng = np.random.default_rng(seed)
    return [np.clip(np.round(base + rng.normal(0, noise, base.shape)), 0, 255).astype(np.uint8) for _ in range(frames)]


def mean_change(frames) -> float:
    return float(np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()
                          for a, b in zip(frames[1:], frames[:-1])]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="content longest side, px (default 128)")
    ap.add_argument("--style-size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--noise", type=float, default=2.0, help="sensor noise sigma, 0-255 units (default 2)")
    ap.add_argument("--method", default="optimize", choices=["optimize", "decoder"])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--decoder-weights", default=None)
    ap.add_argument("--vgg-weights", default=str(DEFAULT_VGG))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=str(HERE / "results" / "temporal_stability.json"))
    args = ap.parse_args()

    from styleswap_ext import image_io
    from styleswap_ext.models import load_decoder, load_encoder
    from styleswap_ext.ops import match_patches
    from styleswap_ext.pipeline import StyleBank, stylize

    torch.manual_seed(0)
    encoder = load_encoder(args.vgg_weights)
    decoder = load_decoder(args.decoder_weights) if args.method == "decoder" else None
    bank = StyleBank(REPO / "styleswap_ext" / "assets" / "starry_night.jpg", encoder, style_size=args.style_size,
                     device=args.device)
    clip = synth_clip(args.size, args.frames, args.noise)
    outs, indices = [], []
    start = time.perf_counter()
    for f in clip:
        x = image_io.pil_to_tensor(Image.fromarray(f)).unsqueeze(0)
        y = stylize(x, bank, method=args.method, iters=args.iters, encoder=encoder, decoder=decoder,
                    progress=False)
        outs.append(image_io.tensor_to_pil(y))
        h, w = (x.shape[-2] // 4) * 4, (x.shape[-1] // 4) * 4
        with torch.no_grad():
            indices.append(match_patches(encoder(x[..., :h, :w].to(bank.device)), bank.features[0], 3, 1).cpu())
    elapsed = time.perf_counter() - start
    inp = [f[: (f.shape[0] // 4) * 4, : (f.shape[1] // 4) * 4] for f in clip]
    out = [np.asarray(o) for o in outs]
    res = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "input_change": mean_change(inp),
        "output_change": mean_change(out),
        "patch_flip": float(np.mean([(a != b).float().mean().item() for a, b in zip(indices[1:], indices[:-1])])),
        "seconds": elapsed,
    }
    res["ratio"] = res["output_change"] / res["input_change"]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

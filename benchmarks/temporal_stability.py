"""Temporal stability of per-frame style swap on a static-camera clip.

    python benchmarks/temporal_stability.py                       # CPU defaults (below)
    python benchmarks/temporal_stability.py --size 256 --iters 100 --frames 16 --method optimize

The clip is synthesised, so the figure is reproducible: a still picture (the bundled cat photo,
``--size`` px) seen by a static camera with sensor noise, i.e. every frame is the same image plus
independent Gaussian noise of ``--noise`` (in 0-255 units), rounded to 8 bits. Every frame is
stylised independently with one :class:`~styleswap_ext.pipeline.StyleBank` (The Starry Night).

With ``--temporal-weight W ...`` the clip is also stylised with the temporal term (``styleswap video
--temporal-weight``: each frame prefers the previous frame's style patches) and each run is reported;
``--pan PX`` makes a panning camera instead (motion: look at the ``--png-dir`` frames for trails).
``--search approximate`` stylises the clip with the approximate search (``styleswap video --search
approximate``), at weight 0 and each ``--temporal-weight``; the first run stays the exact per-frame one,
so the objective and the NCC are measured against the exact search's.

Reported per run (0-255 units, mean over pixels, channels and the T-1 frame pairs):

* ``input_change``  = mean |x_t - x_(t-1)| of the input frames;
* ``output_change`` = mean |y_t - y_(t-1)| of the stylised frames;
* ``ratio`` = output_change / input_change (1 = the stylisation adds no flicker of its own);
* ``patch_flip``   = the fraction of relu3_1 positions whose chosen style patch changes between
  consecutive frames (the swap's own contribution to flicker);
* ``objective_rise`` = per frame, ||Φ(y_t) − Φ^SS_t||² of this run's output over that of the per-frame
  run, minus 1 (Φ^SS_t = the per-frame swap of frame t: the paper's objective, feature term), averaged;
* ``ncc`` / ``ncc_drop`` = mean normalised cross-correlation of the chosen patches, and its relative
  drop against the per-frame argmax (what the temporal term gives up to keep patches).
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
    from styleswap_ext.pipeline import image_io

    base = image_io.resize_longest(image_io.load_image(REPO / "styleswap_ext" / "apps" / "assets" / "cat.jpg"), size)
    base = np.asarray(base, np.float32)
    rng = np.random.default_rng(seed)
    return [np.clip(np.round(base + rng.normal(0, noise, base.shape)), 0, 255).astype(np.uint8) for _ in range(frames)]


def mean_change(frames) -> float:
    return float(np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()
                          for a, b in zip(frames[1:], frames[:-1])]))


def pan_clip(size: int, frames: int, step: int, noise: float, seed: int = 0) -> list:
    """A camera panning across a photo: ``size`` x ``size`` crops of the bundled cat photo (resized to
    2 ``size`` px), moving ``step`` px right and ``step // 2`` px down per frame, with sensor noise."""
    from styleswap_ext.pipeline import image_io

    base = np.asarray(image_io.resize_longest(image_io.load_image(REPO / "styleswap_ext" / "apps" / "assets" / "cat.jpg"),
                                              2 * size), np.float32)
    rng = np.random.default_rng(seed)
    out = []
    for t in range(frames):
        y, x = min(t * (step // 2), base.shape[0] - size), min(t * step, base.shape[1] - size)
        crop = base[y:y + size, x:x + size]
        out.append(np.clip(np.round(crop + rng.normal(0, noise, crop.shape)), 0, 255).astype(np.uint8))
    return out


def chosen_ncc(bank, feats: torch.Tensor, idx: torch.Tensor) -> float:
    """Mean normalised cross-correlation of the chosen style patches (k x k, stride 1, zero-norm content
    patches left out): the quantity the swap's argmax maximises per position."""
    import torch.nn.functional as F

    pb = bank.patch_bank
    k = pb.patch_size
    cp = F.unfold(feats.float(), k)[0].t()  # (n_c, D): at stride 1 the covering grid is the inner one
    j = idx.reshape(-1)
    # the patch rows (a PatchBank on the CPU at stride 1 keeps none: it reads the style maps)
    rows = torch.ops.styleswap.prepare_bank([st.detach() for st in pb.styles], k, pb.stride, pb.weights)[0][0]
    dots = (cp * rows[j, : cp.shape[1]].float()).sum(1) * pb.inv_norm[0, j].float()
    norms = cp.norm(dim=1)
    keep = norms > 0
    return float((dots[keep] / norms[keep]).mean())


def run(clip, bank, encoder, decoder, args, weight: float, plain_targets=None, ncc_bank=None):
    """Stylises every frame with TemporalState(weight) -> frames, indices, targets, objective, NCC
    (``ncc_bank``: an exact bank of the same style to score the choices with; default ``bank``)."""
    from styleswap_ext.pipeline import image_io
    from styleswap_ext.pipeline import TemporalState, stylize

    temporal = TemporalState(weight)
    outs, indices, targets, objectives, nccs = [], [], [], [], []
    for t, f in enumerate(clip):
        x = image_io.pil_to_tensor(Image.fromarray(f)).unsqueeze(0)
        y = stylize(x, bank, method=args.method, iters=args.iters, encoder=encoder, decoder=decoder,
                    progress=False, temporal=temporal)
        outs.append(image_io.tensor_to_pil(y))
        indices.append(temporal.previous.cpu())
        h, w = (x.shape[-2] // 4) * 4, (x.shape[-1] // 4) * 4
        with torch.no_grad():
            feats = encoder(x[..., :h, :w].to(bank.device))
            target = bank.swap(feats)  # the per-frame swap's target (no temporal term)
            targets.append(target)
            ref = target if plain_targets is None else plain_targets[t]
            # the paper's objective (feature term) of this output against the per-frame swap's target
            objectives.append(float((encoder(y[..., :h, :w].to(bank.device)) - ref).pow(2).sum()))
            nccs.append(chosen_ncc(ncc_bank or bank, feats, temporal.previous))
    return outs, indices, targets, objectives, nccs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="content longest side, px (default 128)")
    ap.add_argument("--style-size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--noise", type=float, default=2.0, help="sensor noise sigma, 0-255 units (default 2)")
    ap.add_argument("--method", default="optimize", choices=["optimize", "decoder"])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--temporal-weight", type=float, nargs="+", default=[0.0],
                    help="temporal weights to compare (NCC units; 0 = per-frame); the first run with 0 "
                         "gives the per-frame targets the objective is measured against (default: 0 only)")
    ap.add_argument("--pan", type=int, default=0, metavar="PX",
                    help="a panning camera instead of a static one: PX px right (PX/2 down) per frame")
    ap.add_argument("--png-dir", default=None, help="write every output frame there as PNG (to look at)")
    ap.add_argument("--decoder-weights", default=None)
    ap.add_argument("--vgg-weights", default=str(DEFAULT_VGG))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--search", default="exact", choices=["exact", "approximate"],
                    help="the search of the runs after the first (exact, per-frame) one (default exact)")
    ap.add_argument("--json", default=str(HERE / "results" / "temporal_stability.json"))
    args = ap.parse_args()

    from styleswap_ext.models import load_decoder, load_encoder
    from styleswap_ext.pipeline import StyleBank

    torch.manual_seed(0)
    encoder = load_encoder(args.vgg_weights)
    decoder = load_decoder(args.decoder_weights) if args.method == "decoder" else None
    style = REPO / "styleswap_ext" / "apps" / "assets" / "starry_night.jpg"
    bank = StyleBank(style, encoder, style_size=args.style_size, device=args.device)
    searched = bank if args.search == "exact" else StyleBank(style, encoder, style_size=args.style_size,
                                                             device=args.device, search=args.search)
    if args.pan:
        clip = pan_clip(args.size, args.frames, args.pan, args.noise)
    else:
        clip = synth_clip(args.size, args.frames, args.noise)
    inp = [f[: (f.shape[0] // 4) * 4, : (f.shape[1] // 4) * 4] for f in clip]
    weights = [0.0] + [w for w in args.temporal_weight if w != 0.0 or args.search != "exact"]
    res = {"settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
           "input_change": mean_change(inp), "runs": []}
    plain_targets = plain_objective = plain_ncc = None
    for i, w in enumerate(weights):
        start = time.perf_counter()
        outs, indices, targets, objectives, nccs = run(clip, bank if i == 0 else searched, encoder, decoder, args, w,
                                                       plain_targets, ncc_bank=bank)
        elapsed = time.perf_counter() - start
        if plain_targets is None:
            plain_targets, plain_objective, plain_ncc = targets, objectives, nccs
        out = [np.asarray(o) for o in outs]
        r = {
            "search": "exact" if i == 0 else args.search,
            "temporal_weight": w,
            "output_change": mean_change(out),
            "patch_flip": float(np.mean([(a != b).float().mean().item() for a, b in zip(indices[1:], indices[:-1])])),
            # per frame, against the per-frame swap (weight 0): the objective's rise and the NCC's drop
            "objective_rise": float(np.mean([a / b - 1 for a, b in zip(objectives, plain_objective)])),
            "objective_rise_max": float(np.max([a / b - 1 for a, b in zip(objectives, plain_objective)])),
            "ncc": float(np.mean(nccs)),
            "ncc_drop": float(np.mean([1 - a / b for a, b in zip(nccs, plain_ncc)])),
            "seconds": elapsed,
        }
        r["ratio"] = r["output_change"] / res["input_change"]
        res["runs"].append(r)
        if args.png_dir:
            d = Path(args.png_dir) / (f"w{w:g}" if r["search"] == "exact" else f"{r['search']}_w{w:g}")
            d.mkdir(parents=True, exist_ok=True)
            for t, o in enumerate(outs):
                o.save(d / f"frame{t:03d}.png")
            if i == 0:
                for t, f in enumerate(inp):
                    Image.fromarray(f).save(Path(args.png_dir) / f"input{t:03d}.png")
        print(json.dumps(r), flush=True)
    # the first run's figures at the top level, as before (the per-frame swap)
    res.update({k: res["runs"][0][k] for k in ("output_change", "patch_flip", "ratio", "seconds")})
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

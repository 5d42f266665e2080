"""Capacity probe for issue 5's objective bar: fit a decoder to ONE style-swapped target.

    python benchmarks/decoder_capacity.py --init CKPT --iters 2000 --lr 3e-4 [--size 256] [--pair 0]
    python benchmarks/decoder_capacity.py --init scratch --width 2 --iters 500 --lr 1e-3

The bar asks the decoder, in one pass on pairs it never saw, for an objective
‖Φ(f(H)) − H‖² / ‖H‖² at most that of 100 iterations of the optimisation mode. This script asks an
easier question: with its weights fitted by Adam to a single target H (the first validation content
× style pair of the checkpoint's split, as in ``quality_report.py``), how low does the network's
objective on *that* target go, and after how many steps? If memorising one target cannot reach the
optimisation figure, a decoder trained on a distribution will not either. ``--init CKPT`` starts
from a trained checkpoint (architecture from it); ``--init scratch --width W`` from a random
decoder of the shipped layout with W times the channels (W = 1 is the shipped width; instance norm
off, as in the checkpoint). Prints the ratio every ``--every`` steps and the optimisation mode's
ratios after ``--opt-iters`` iterations (100, 500) on the same target; ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import quality_report as q  # noqa: E402
from styleswap_ext.models import load_decoder, load_encoder  # noqa: E402
from styleswap_ext.pipeline import resolve_device  # noqa: E402
from styleswap_ext.pipeline.training import swap_function  # noqa: E402


def wide_decoder(width: int) -> nn.Module:
    """models.Decoder's layout without instance norm, every hidden width times ``width``."""
    def conv(ci, co, last=False):
        block = [nn.ReflectionPad2d(1), nn.Conv2d(ci, co, 3)]
        return block if last else block + [nn.ReLU(inplace=True)]

    up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
    w1, w2 = 128 * width, 64 * width
    return nn.Sequential(*conv(256, w1), up(), *conv(w1, w1), *conv(w1, w2), up(), *conv(w2, w2),
                         *conv(w2, 3, last=True), nn.Sigmoid())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True, help="a train-decoder checkpoint (its split picks the pair), or 'scratch'")
    p.add_argument("--split-from", default=str(REPO / "benchmarks" / "results" / "decoder_cpu.ckpt"),
                   help="checkpoint whose validation split picks the pair with --init scratch")
    p.add_argument("--width", type=int, default=1, help="channel multiplier with --init scratch (1)")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--size", type=int, default=256, help="longest side of content and style (256, as QUALITY.md's CPU pairs)")
    p.add_argument("--pair", type=int, default=0, help="which validation pair (content i, style i)")
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--opt-iters", type=int, nargs="+", default=[100, 500],
                   help="optimisation-mode iterations to compare with (100 500; the first is the bar's)")
    p.add_argument("--content-dir", default=str(q.SHARED / "data" / "content"))
    p.add_argument("--style-dir", default=str(q.SHARED / "data" / "style"))
    p.add_argument("--vgg-weights", default=str(q.SHARED / "weights" / "vgg19_conv1_1-conv3_1_torchvision.pth"))
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file for the curve and the optimisation figures")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    split_ck = args.split_from if args.init == "scratch" else args.init
    split = torch.load(split_ck, map_location="cpu", weights_only=True)["split"]
    cname = split["content"]["val"][args.pair % len(split["content"]["val"])]
    sname = split["style"]["val"][args.pair % len(split["style"]["val"])]
    c = q.load(Path(args.content_dir) / cname, args.size, device)
    s = q.load(Path(args.style_dir) / sname, args.size, device)
    encoder = load_encoder(args.vgg_weights, device=device, progress=False)
    with torch.no_grad():
        target = swap_function("auto", device)(encoder(c), encoder(s), 3, 1)
    opt_ratios, _ = q.optimise_ratios(encoder, target, c, args.opt_iters)
    bar = opt_ratios[args.opt_iters[0]]

    decoder = (wide_decoder(args.width) if args.init == "scratch" else load_decoder(args.init)).to(device).train()
    decoder.requires_grad_(True)
    params = sum(t.numel() for t in decoder.parameters())
    print(f"pair {cname} x {sname}, {tuple(c.shape[-2:])} px; decoder {args.init} ({params:,} parameters); "
          "optimisation mode: " + ", ".join(f"{v:.4f} after {n}" for n, v in sorted(opt_ratios.items())) + " iterations",
          flush=True)
    adam = torch.optim.Adam(decoder.parameters(), lr=args.lr)
    norm = target.pow(2).sum()
    curve, t0 = [], time.perf_counter()
    for it in range(args.iters + 1):
        loss = (encoder(decoder(target)) - target).pow(2).sum() / norm
        if it % args.every == 0 or it == args.iters:
            curve.append((it, loss.item()))
            print(f"step {it:5d}  ratio {loss.item():.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        if it == args.iters:
            break
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
    best = min(v for _, v in curve)
    print(f"best {best:.4f}; optimisation {args.opt_iters[0]} it {bar:.4f}: {'reached' if best <= bar else 'not reached'}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "content": cname, "style": sname, "size": args.size, "init": args.init, "width": args.width,
            "parameters": params, "lr": args.lr, "iters": args.iters, "curve": curve,
            "optimisation": {str(k): v for k, v in opt_ratios.items()}, "device": str(device),
            "torch": torch.__version__}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

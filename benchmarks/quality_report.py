"""Quality report of a trained decoder (issue 5): numbers, figures and a Markdown section.

    python benchmarks/quality_report.py --decoder CKPT [--size 512] [--pairs 8] [--opt-iters 100 500]
                                        [--out-dir quality] [--device auto]

Only the **validation** images of the checkpoint's split are used (``split`` in the checkpoint
written by ``styleswap train-decoder``), read from ``--content-dir`` / ``--style-dir``.

1. **Reconstruction PSNR** of decoder(encoder(x)) on the validation photos, longest side ``--size``
   (cropped to a multiple of 4), against the Universal Style Transfer relu3_1 decoder in
   ``--ust-dir`` with its own "normalised" VGG-19 encoder (the third-party baseline;
   bar: ours >= baseline). PSNR = 10·log10(1 / MSE) on [0, 1] RGB, output clamped to [0, 1].
2. **The paper's objective** ‖Φ(I) − H‖² / ‖H‖² with H = style swap of Φ(content) with Φ(style)
   (3x3 patches, stride 1) for ``--pairs`` validation content × style pairs: I = decoder(H) and
   I = the optimisation mode (``pipeline.objective``: Adam lr 0.05 on the [0, 1] image from the
   content image, TV 1e-5, clamped) after each of ``--opt-iters`` iterations
   (bar: decoder <= 100-iteration optimisation).
3. **Figures**: ``grid.png`` (validation contents × styles, all by the decoder in one pass),
   ``pair.png`` (content | style | decoder | optimisation after the last ``--opt-iters``) and
   ``reconstruction.png`` (the first ``--grid`` PSNR photos: photo | ours | UST baseline).

Writes ``results.json``, ``quality.md`` (a section to paste into QUALITY.md) and the PNGs into
``--out-dir``, and prints the Markdown to stdout. Smoke run on a CPU::

    python benchmarks/quality_report.py --decoder ck.pth --size 64 --pairs 1 --opt-iters 2 4 --grid 2

``--pairs 0`` measures only the PSNR table (seconds on a CPU): the quick check to compare training runs.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from styleswap_ext.pipeline import image_io  # noqa: E402
from styleswap_ext.models import load_decoder, load_encoder  # noqa: E402
from styleswap_ext.pipeline import TV_WEIGHT, optimize_image, resolve_device  # noqa: E402
from styleswap_ext.pipeline.training import swap_function  # noqa: E402

SHARED = REPO.parent / "shared"


# --- the third-party baseline: Universal Style Transfer (Li et al. 2017), relu3_1 ------------------


def _pad_conv(cin, cout):
    return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]


class USTEncoder(nn.Module):
    """'Normalised' VGG-19 to relu3_1; layer indices match vgg_normalised_conv3_1.pth.

    Input RGB [0, 1]: the 1x1 conv 0 does RGB -> BGR x 255 - mean; reflection padding;
    ceil-mode max pooling.
    """

    def __init__(self):
        super().__init__()
        pool = lambda: nn.MaxPool2d(2, 2, ceil_mode=True)  # noqa: E731
        self.net = nn.Sequential(
            nn.Conv2d(3, 3, 1),                                   # 0
            *_pad_conv(3, 64), nn.ReLU(),                          # 1-3  relu1_1
            *_pad_conv(64, 64), nn.ReLU(), pool(),                 # 4-7
            *_pad_conv(64, 128), nn.ReLU(),                        # 8-10 relu2_1
            *_pad_conv(128, 128), nn.ReLU(), pool(),               # 11-14
            *_pad_conv(128, 256), nn.ReLU(),                       # 15-17 relu3_1
        )

    def forward(self, x):
        return self.net(x)


class USTDecoder(nn.Module):
    """The matching inverter (feature_invertor_conv3_1.pth): mirrors the encoder, nearest x2."""

    def __init__(self):
        super().__init__()
        up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
        self.net = nn.Sequential(
            *_pad_conv(256, 128), nn.ReLU(), up(),                 # 0-3
            *_pad_conv(128, 128), nn.ReLU(),                       # 4-6
            *_pad_conv(128, 64), nn.ReLU(), up(),                  # 7-10
            *_pad_conv(64, 64), nn.ReLU(),                         # 11-13
            *_pad_conv(64, 3),                                     # 14-15
        )

    def forward(self, x):
        return self.net(x)


def load_ust(ust_dir: Path, device):
    enc, dec = USTEncoder(), USTDecoder()
    enc.net.load_state_dict(torch.load(ust_dir / "vgg_normalised_conv3_1.pth", map_location="cpu", weights_only=True))
    dec.net.load_state_dict(torch.load(ust_dir / "feature_invertor_conv3_1.pth", map_location="cpu", weights_only=True))
    return enc.eval().requires_grad_(False).to(device), dec.eval().requires_grad_(False).to(device)


# --- helpers -----------------------------------------------------------------------------------------


def load(path: Path, size: int, device) -> torch.Tensor:
    img = image_io.resize_longest(image_io.load_image(path), size)
    t = image_io.pil_to_tensor(img).unsqueeze(0)
    h, w = t.shape[-2:]
    return t[..., : h - h % 4, : w - w % 4].to(device)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1) - b).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def ratio(encoder, image, target) -> float:
    return ((encoder(image) - target).pow(2).sum() / target.pow(2).sum()).item()


def optimise_ratios(encoder, target, init, iters, lr=0.05, tv_weight=TV_WEIGHT):
    """pipeline.optimize_image, recording the objective ratio after each of ``iters`` steps."""
    wanted = set(iters)
    out = {}

    def record(step, x):
        if step in wanted:
            out[step] = ratio(encoder, x, target)

    image, _ = optimize_image(encoder, target, init, max(wanted), lr=lr, tv_weight=tv_weight, progress=False,
                              callback=record)
    return out, image


def grid_image(rows, cols, cells, tile):
    """rows: content tensors, cols: style tensors, cells[i][j]: results; one PIL image.

    Each column is ``tile`` px wide; each row as tall as its tallest thumbnail (no empty bands
    for landscape images)."""
    from PIL import Image

    def thumb(t):
        img = image_io.tensor_to_pil(t)
        img.thumbnail((tile, tile))
        return img

    table = [[None] + [thumb(s) for s in cols]]
    table += [[thumb(c)] + [thumb(cells[i][j]) for j in range(len(cols))] for i, c in enumerate(rows)]
    heights = [max(t.height for t in row if t is not None) for row in table]
    canvas = Image.new("RGB", ((len(cols) + 1) * tile, sum(heights)), (255, 255, 255))
    y = 0
    for row, h in zip(table, heights):
        for j, t in enumerate(row):
            if t is not None:
                canvas.paste(t, (j * tile + (tile - t.width) // 2, y + (h - t.height) // 2))
        y += h
    return canvas


def row_image(images, tile):
    from PIL import Image

    thumbs = []
    for t in images:
        img = image_io.tensor_to_pil(t)
        img.thumbnail((tile, tile))
        thumbs.append(img)
    canvas = Image.new("RGB", (sum(t.width for t in thumbs), max(t.height for t in thumbs)), (255, 255, 255))
    x = 0
    for t in thumbs:
        canvas.paste(t, (x, 0))
        x += t.width
    return canvas


def column_image(images):
    """PIL images stacked top to bottom, left-aligned on white."""
    from PIL import Image

    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), (255, 255, 255))
    y = 0
    for img in images:
        canvas.paste(img, (0, y))
        y += img.height
    return canvas


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--decoder", required=True, help="checkpoint written by styleswap train-decoder (with its split)")
    p.add_argument("--content-dir", default=str(SHARED / "data" / "content"))
    p.add_argument("--style-dir", default=str(SHARED / "data" / "style"))
    p.add_argument("--ust-dir", default=str(SHARED / "weights" / "ust_baseline"))
    p.add_argument("--vgg-weights", default=str(SHARED / "weights" / "vgg19_conv1_1-conv3_1_torchvision.pth"))
    p.add_argument("--size", type=int, default=512, help="longest side of the PSNR photos and the pair contents (512)")
    p.add_argument("--pair-size", type=int, default=None,
                   help="longest side of the pair and grid contents (default --size; smaller keeps a CPU run short)")
    p.add_argument("--style-size", type=int, default=None, help="longest side of the styles (default the pair size)")
    p.add_argument("--pairs", type=int, default=8,
                   help="content x style pairs for the objective (default 8); 0 = PSNR only (no objective, no figures)")
    p.add_argument("--opt-iters", type=int, nargs="+", default=[100, 500], help="optimisation checkpoints (100 500)")
    p.add_argument("--psnr-images", type=int, default=None, help="at most this many val photos for PSNR (default all)")
    p.add_argument("--grid", type=int, default=3, help="contents and styles in the grid figure (default 3)")
    p.add_argument("--tile", type=int, default=256, help="tile size of the figures in px (default 256)")
    p.add_argument("--out-dir", default="quality", help="where results.json, quality.md and the PNGs go")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.pairs < 0:
        p.error("--pairs must be >= 0")

    device = resolve_device(args.device)
    style_swap = swap_function("auto", device)  # the fused kernels, or the reference without a CUDA build
    pair_size = args.pair_size or args.size
    style_size = args.style_size or pair_size
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ck = torch.load(args.decoder, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or "split" not in ck:
        p.error(f"{args.decoder} has no train/val split: give a checkpoint written by styleswap train-decoder")
    split = ck["split"]
    cdir, sdir = Path(args.content_dir), Path(args.style_dir)
    val_c = [cdir / n for n in split["content"]["val"] if (cdir / n).is_file()]
    val_s = [sdir / n for n in split["style"]["val"] if (sdir / n).is_file()]
    if not val_c or not val_s:
        p.error(f"no validation images found ({len(val_c)} content in {cdir}, {len(val_s)} style in {sdir})")
    train_names = set(split["content"]["train"]) | set(split["style"]["train"])
    assert not ({q.name for q in val_c + val_s} & train_names), "validation images overlap the training split"

    encoder = load_encoder(args.vgg_weights, device=device, progress=False)
    decoder = load_decoder(args.decoder, device=device)
    ust = load_ust(Path(args.ust_dir), device) if (Path(args.ust_dir) / "vgg_normalised_conv3_1.pth").is_file() else None

    results = {"decoder": str(args.decoder), "iteration": ck.get("iteration"), "size": args.size,
               "pair_size": pair_size, "style_size": style_size, "device": str(device),
               "machine": (torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"),
               "torch": torch.__version__}

    # 1. reconstruction PSNR
    photos = val_c[: args.psnr_images] if args.psnr_images else val_c
    rows, recon = [], []  # recon: (photo, ours, baseline) of the first --grid photos, for the figure
    with torch.no_grad():
        for path in photos:
            x = load(path, args.size, device)
            y_ours = decoder(encoder(x))
            y_base = ust[1](ust[0](x))[..., : x.shape[-2], : x.shape[-1]] if ust else None
            base = psnr(y_base, x) if ust else float("nan")
            rows.append({"image": path.name, "ours": psnr(y_ours, x), "ust": base})
            if len(recon) < args.grid:
                recon.append([x, y_ours] + ([y_base] if ust else []))
    results["psnr"] = rows
    mean_ours = statistics.fmean(r["ours"] for r in rows)
    mean_ust = statistics.fmean(r["ust"] for r in rows)
    psnr_table = ["| image | ours | UST baseline |", "|---|---|---|",
                  *[f"| {r['image']} | {r['ours']:.2f} | {r['ust']:.2f} |" for r in rows],
                  f"| **mean** | **{mean_ours:.2f}** | **{mean_ust:.2f}** |"]
    if args.pairs == 0:  # the PSNR table only (quick A/B of training runs)
        (out_dir / "results.json").write_text(json.dumps(results, indent=1))
        text = "\n".join(psnr_table)
        (out_dir / "quality.md").write_text(text + "\n")
        print(text)
        return 0

    # 2. objective ratio on style-swapped targets
    pairs = [(val_c[i % len(val_c)], val_s[i % len(val_s)]) for i in range(args.pairs)]
    obj_rows = []
    pair_fig = None
    for k, (cp, sp) in enumerate(pairs):
        c, s = load(cp, pair_size, device), load(sp, style_size, device)
        with torch.no_grad():
            target = style_swap(encoder(c), encoder(s), 3, 1)
            t0 = time.perf_counter()
            dec_img = decoder(target)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t_dec = time.perf_counter() - t0
            r_dec = ratio(encoder, dec_img, target)
        t0 = time.perf_counter()
        r_opt, opt_img = optimise_ratios(encoder, target, c, args.opt_iters)
        t_opt = time.perf_counter() - t0
        obj_rows.append({"content": cp.name, "style": sp.name, "decoder": r_dec,
                         **{f"opt_{n}": v for n, v in r_opt.items()}, "decoder_s": t_dec, "opt_s": t_opt})
        if k == 0:
            pair_fig = row_image([c, s, dec_img, opt_img], args.tile)
    results["objective"] = obj_rows

    # 3. figures
    gc, gs = val_c[: args.grid], val_s[: args.grid]
    cs = [load(q, pair_size, device) for q in gc]
    ss = [load(q, style_size, device) for q in gs]
    with torch.no_grad():
        feats_s = [encoder(s) for s in ss]
        cells = [[decoder(style_swap(encoder(c), fs, 3, 1)) for fs in feats_s] for c in cs]
    grid_image(cs, ss, cells, args.tile).save(out_dir / "grid.png")
    pair_fig.save(out_dir / "pair.png")
    column_image([row_image(r, args.tile) for r in recon]).save(out_dir / "reconstruction.png")

    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    iters = sorted(set(args.opt_iters))
    mean = lambda key: statistics.fmean(r[key] for r in obj_rows)  # noqa: E731
    md = [f"## Decoder quality (checkpoint iteration {results['iteration']}, {results['machine']}, torch {results['torch']})",
          "",
          f"Validation images only (the checkpoint's split): {len(photos)} photos for PSNR, {len(pairs)} content x style "
          f"pairs for the objective. Photos for PSNR at longest side {args.size} px, pair contents at {pair_size} px, "
          f"styles at {style_size} px.",
          "",
          "### Reconstruction PSNR of decoder(encoder(x)) (dB, higher is better)",
          "",
          *psnr_table,
          "",
          f"Bar (ours >= baseline): {'met' if mean_ours >= mean_ust else 'NOT met'}.",
          "",
          "### Objective ||Phi(I) - H||^2 / ||H||^2 on style-swapped targets (lower is better)",
          "",
          "| content | style | decoder (1 pass) | " + " | ".join(f"optimisation {n} it" for n in iters) + " |",
          "|---|---|---|" + "---|" * len(iters),
          *[f"| {r['content']} | {r['style']} | {r['decoder']:.4f} | " + " | ".join(f"{r[f'opt_{n}']:.4f}" for n in iters)
            + " |" for r in obj_rows],
          f"| **mean** | | **{mean('decoder'):.4f}** | " + " | ".join(f"**{mean(f'opt_{n}'):.4f}**" for n in iters) + " |",
          "",
          f"Time per pair: decoder {statistics.fmean(r['decoder_s'] for r in obj_rows) * 1e3:.1f} ms, "
          f"optimisation ({iters[-1]} it) {statistics.fmean(r['opt_s'] for r in obj_rows):.1f} s on {results['machine']}.",
          ]
    if 100 in iters:
        md += ["", f"Bar (decoder <= 100-iteration optimisation): {'met' if mean('decoder') <= mean('opt_100') else 'NOT met'}."]
    md += ["", "Content x style grid by the decoder (first row: styles, first column: contents):", "",
           "![grid](grid.png)", "",
           f"One pair: content | style | decoder | optimisation ({iters[-1]} iterations):", "", "![pair](pair.png)", "",
           "Reconstructions, photo | ours" + (" | UST baseline" if ust else "") + ":", "",
           "![reconstruction](reconstruction.png)", ""]
    text = "\n".join(md)
    (out_dir / "quality.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

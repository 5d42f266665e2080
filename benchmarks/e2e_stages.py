"""Where the time of one ``stylize`` call goes: load, encode, style bank, swap, decode, to-image, save.

``benchmarks/e2e.py`` times whole CLI runs; this splits one run of the same pipeline steps into
stages (a device sync after each), so that a missed end-to-end bar says which stage to work on.
Each configuration runs twice in one process: the first pass pays one-off costs (CUDA kernel
loading, cuDNN/cuBLAS set-up), the second shows the steady state (e.g. the next image of a batch).
The decoder has random weights: its time depends only on the architecture.

    python benchmarks/e2e_stages.py --device cuda --precision tf32 --size 4096 --style-size 1024 \
        --vgg-weights W.pth --json stages.json
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from styleswap_ext.pipeline import image_io, tiling  # noqa: E402
from styleswap_ext.pipeline import stylization as pipeline  # noqa: E402  (_precision)
from styleswap_ext.models import Decoder, load_encoder  # noqa: E402


def run_once(content_path, style_path, out_path, encoder, decoder, dev, precision, kernel):
    """One stylisation of ``content_path`` split into timed stages (seconds, device-synchronised)."""
    if kernel:
        os.environ["STYLESWAP_MATCH_KERNEL"] = kernel
    else:
        os.environ.pop("STYLESWAP_MATCH_KERNEL", None)
    times = {}
    t = time.perf_counter()

    def lap(name):
        nonlocal t
        if dev.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        times[name] = now - t
        t = now

    tile = tiling.default_tile_size(dev)
    c = image_io.pil_to_uint8(image_io.load_image(content_path))[None]  # as stylize(): uint8 until on the device
    lap("load")
    with pipeline._precision(precision), torch.no_grad():
        c = image_io.uint8_to_float(c.to(dev))
        h, w = (c.shape[-2] // 4) * 4, (c.shape[-1] // 4) * 4
        c = c[..., :h, :w]
        lap("to_device")
        cf = tiling.encode(encoder, c, tile, False)
        lap("encode")
        bank = pipeline.StyleBank([style_path], encoder, device=dev, precision=precision, tile_size=tile)
        lap("style_bank")
        target = bank.swap(cf)
        lap("swap")
        out = tiling.decode(decoder, target, tile, False).float().clamp(0, 1)
        lap("decode")
    img = image_io.tensor_to_pil(out)
    lap("to_image")
    image_io.save_image(img, out_path)
    lap("save")
    times["total"] = sum(times.values())
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="tf32", choices=pipeline.PRECISIONS)
    ap.add_argument("--size", default="4096", help="content N (square) or WxH")
    ap.add_argument("--style-size", type=int, default=1024)
    ap.add_argument("--kernels", nargs="+", default=["default"],
                    help="'default' and/or the other CUDA match paths 'cublas', 'cublas_fused', 'wmma', 'wgmma', "
                         "'tma' (STYLESWAP_MATCH_KERNEL)")
    ap.add_argument("--formats", nargs="+", default=["jpg"])
    ap.add_argument("--vgg-weights", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from PIL import Image

    dev = torch.device(args.device)
    w, _, h = args.size.partition("x")
    size = (int(w), int(h or w))
    assets = REPO / "styleswap_ext" / "apps" / "assets"
    tmp = Path(tempfile.mkdtemp(prefix="e2e_stages_"))
    content = tmp / "content.png"
    Image.open(assets / "cat.jpg").convert("RGB").resize(size, Image.LANCZOS).save(content)
    style = tmp / "style.png"
    Image.open(assets / "starry_night.jpg").convert("RGB").resize((args.style_size,) * 2, Image.LANCZOS).save(style)
    encoder = load_encoder(args.vgg_weights).to(dev).eval()
    decoder = Decoder(instance_norm=False).to(dev).eval()
    rows = []
    for kernel in args.kernels:
        for fmt in args.formats:
            for rep in ("first", "second"):
                times = run_once(content, style, tmp / f"out.{fmt}", encoder, decoder, dev, args.precision,
                                 None if kernel == "default" else kernel)
                row = {"size": list(size), "style_size": args.style_size, "precision": args.precision,
                       "kernel": kernel, "format": fmt, "pass": rep, **{k: round(v, 4) for k, v in times.items()}}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name() if dev.type == "cuda"
                                               else "cpu", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

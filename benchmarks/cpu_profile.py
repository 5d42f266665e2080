"""Where the time of one CPU stylisation goes, stage by stage, as ``styleswap stylize`` runs it.

    python benchmarks/cpu_profile.py CONTENT STYLE --search approximate --json out.json
    python benchmarks/cpu_profile.py CONTENT STYLE --layers reference     # the encoder/decoder as modules
    python benchmarks/cpu_profile.py CONTENT STYLE --ops                  # + the top operators of each pass

Stages, each timed in wall seconds and in process CPU seconds (all threads; on a shared machine other
processes inflate wall time much more than CPU time): ``import_torch``; ``import_styleswap`` (our
modules on top of torch: the CLI, pipeline, ops and the compiled library); ``models`` (VGG and decoder
weights); ``load`` (decoding both images); ``encode_content``, ``encode_style`` (the tiled encoder, CPU tile
1024 px); ``index`` (the ``PatchBank``: the exact bank, or the approximate search's index); ``match``;
``gather`` (``swap_gather``); ``decode`` (tiled decoder); ``save`` (to 8-bit and a PNG file). One pass in a
fresh process, as the command runs (``--repeat`` adds passes: the steady state of a directory run).

``--layers reference`` runs the encoder and decoder layers as the modules themselves
(``styleswap_ext.models.cpu_layers.reference()``: the path before the CPU kernels of cpu_layers);
The script runs against the tree it sits in (an older checkout too).
"""

import time

T_START = time.perf_counter()
C_START = time.process_time()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


class Laps:
    """Wall and CPU seconds of consecutive stages."""

    def __init__(self):
        self.t, self.c = time.perf_counter(), time.process_time()
        self.rows = {}

    def lap(self, name):
        t, c = time.perf_counter(), time.process_time()
        self.rows[name] = {"wall_s": round(t - self.t, 3), "cpu_s": round(c - self.c, 3)}
        self.t, self.c = t, c


def top_ops(fn, n=8):
    """fn() under torch.profiler: the n operators of most self CPU time, as (name, ms, calls)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:n]
    return [(e.key, round(e.self_cpu_time_total / 1e3, 1), e.count) for e in events]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("content")
    ap.add_argument("style")
    ap.add_argument("--search", default="approximate", choices=("exact", "approximate"))
    ap.add_argument("--layers", default="fast", choices=("fast", "reference"))
    ap.add_argument("--vgg-weights", default=None)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--ops", action="store_true", help="also list the top operators of the encoder and decoder")
    ap.add_argument("--out", default=None, help="the stylised PNG (default: a temporary file)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    startup = Laps()
    startup.t, startup.c = T_START, C_START
    sys.path.insert(0, str(REPO))
    import torch

    startup.lap("import_torch")
    try:  # what the CLI loads, in the package's layer folders
        from styleswap_ext.apps import cli  # noqa: F401
        from styleswap_ext.models import cpu_layers
        from styleswap_ext.pipeline import image_io, stylization, tiling  # noqa: F401
    except ImportError:  # a checkout from before the folders (issue 42)
        from styleswap_ext import cli, image_io, pipeline, tiling  # noqa: F401
        try:
            from styleswap_ext import cpu_layers
        except ImportError:  # a checkout from before cpu_layers: its layers are the modules anyway
            cpu_layers = None
    from styleswap_ext import PatchBank
    from styleswap_ext.models import load_decoder, load_encoder

    startup.lap("import_styleswap")
    layers = contextlib.nullcontext()
    if args.layers == "reference":
        if cpu_layers is not None:
            layers = cpu_layers.reference()
    encoder = load_encoder(args.vgg_weights).eval()
    decoder = load_decoder().eval()
    startup.lap("models")
    tile = tiling.default_tile_size("cpu")
    out_path = Path(args.out) if args.out else Path(__import__("tempfile").mkdtemp()) / "out.png"
    passes = []
    with layers, torch.no_grad():
        for _ in range(args.repeat):
            laps = Laps()
            c = image_io.pil_to_uint8(image_io.load_image(args.content))[None]
            s = image_io.pil_to_tensor(image_io.load_image(args.style))[None]
            laps.lap("load")
            c = image_io.uint8_to_float(c)
            c = c[..., :c.shape[-2] // 4 * 4, :c.shape[-1] // 4 * 4]
            cf = tiling.encode(encoder, c, tile)
            laps.lap("encode_content")
            sf = tiling.encode(encoder, s, tile)
            laps.lap("encode_style")
            bank = PatchBank(sf, 3, 1, search=args.search)
            laps.lap("index")
            idx = bank.match(cf)
            laps.lap("match")
            swapped = torch.ops.styleswap.swap_gather(idx, bank.styles, 3, 1, cf.shape[-2], cf.shape[-1])
            laps.lap("gather")
            img = tiling.decode(decoder, swapped, tile).float().clamp(0, 1)
            laps.lap("decode")
            image_io.save_image(image_io.tensor_to_pil(img), out_path)
            laps.lap("save")
            passes.append(laps.rows)
        ops_rows = {}
        if args.ops:
            ops_rows = {"encode_content": top_ops(lambda: tiling.encode(encoder, c, tile)),
                        "decode": top_ops(lambda: tiling.decode(decoder, swapped, tile))}
    report = {"content": args.content, "style": args.style, "content_px": list(c.shape[-2:]),
              "style_px": list(s.shape[-2:]), "search": args.search, "layers": args.layers,
              "threads": torch.get_num_threads(),
              "torch": torch.__version__, "startup": startup.rows, "passes": passes, "ops": ops_rows}
    first = {**startup.rows, **passes[0]}
    report["total"] = {k: round(sum(r[k] for r in first.values()), 2) for k in ("wall_s", "cpu_s")}
    print(json.dumps(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

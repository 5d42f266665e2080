"""End-to-end ``styleswap stylize`` time and peak memory against content resolution, ours vs the
conv reference, on the CPU (or a GPU with ``--device cuda``).

    python benchmarks/e2e.py                                   # 512 1024 2048 px, 256 px style
    python benchmarks/e2e.py --sizes 512 1024 2048 4096 --style-size 1024 --device cuda --precision tf32
    python benchmarks/e2e.py --sizes 3840x2160 --style-size 1024 --device cuda --precision tf32 --impls ours
    python benchmarks/e2e.py --plot-only benchmarks/results/e2e_cpu.json

Each case is one fresh process that runs the CLI (``styleswap_ext.apps.cli.main``) on a square
content PNG of N px and a style PNG (the bundled cat and The Starry Night, resized beforehand):
load both images, load the encoder and decoder, encode (tiled above ``--tile-size``), swap,
decode (tiled), save a PNG (and/or a JPEG: ``--formats png jpg``). Reported: ``run_s`` = wall
time of that whole ``main()`` call (not the Python/torch import), ``peak_rss_gib`` = the process's
VmHWM (peak resident set) from /proc/self/status, and on CUDA ``cuda_peak_gib`` = torch.cuda.max_memory_allocated.

``--impl ours`` swaps with the fused op (the pipeline's ``PatchBank``); ``--impl reference``
replaces it by ``styleswap_ext.ops.reference.style_swap`` (conv2d -> argmax -> one-hot ->
conv_transpose2d), everything else identical. A reference case runs under an address-space cap
(``--ref-mem-cap-gib`` over the baseline; CPU only) so that it fails with "out of memory" instead
of taking the machine down; such a case is marked OOM.

The decoder is the one the CLI uses by default, the weights shipped in the package
(``styleswap_ext/models/weights/decoder.pth``), unless ``--decoder-weights`` names others. Figures recorded
before 2026-11-28 (``"decoder": "random-initialised Decoder"`` in their JSON) used a random decoder
*with* instance normalisation, whose tiled decode needs an extra statistics pass; the shipped one
has none.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # this tree's styleswap_ext, not another installed copy
ASSETS = REPO / "styleswap_ext" / "apps" / "assets"
DEFAULT_VGG = REPO.parent / "shared" / "weights" / "vgg19_conv1_1-conv3_1_torchvision.pth"

CHILD = r"""
import json, sys, time
import torch
from styleswap_ext.apps import cli
from styleswap_ext.pipeline import stylization as pipeline  # its PatchBank is replaced below
from styleswap_ext.ops import reference
cfg = json.loads(sys.argv[1])
if cfg["impl"] == "reference":
    class ReferenceBank:  # the pipeline's PatchBank, swapped by the conv reference instead
        search = "exact"  # the pipeline names the search in its stage line
        def __init__(self, feats, k, s, weights=None, style_labels=None, **search):  # no controls, exact only
            self.feats, self.k, self.s = feats, k, s
        def swap(self, content, progress=False, **controls):
            return reference.style_swap(content, self.feats, self.k, self.s)
    pipeline.PatchBank = ReferenceBank
if cfg["device"] == "cuda":
    torch.cuda.init()
t0 = time.perf_counter()
rc = cli.main(cfg["argv"])
if cfg["device"] == "cuda":
    torch.cuda.synchronize()
t = time.perf_counter() - t0
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
res = {"rc": rc, "run_s": t, "peak_rss_gib": int(status["VmHWM"].split()[0]) / 2**20}
if cfg["device"] == "cuda":
    res["cuda_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
print("RESULT " + json.dumps(res))
"""


def _make_inputs(tmp: Path, sizes, style_size):
    from PIL import Image

    cat = Image.open(ASSETS / "cat.jpg").convert("RGB")
    paths = {}
    for n in sizes:
        p = tmp / f"content_{n}.png"
        cat.resize(_shape(n), Image.LANCZOS).save(p)
        paths[n] = p
    style = tmp / f"style_{style_size}.png"
    Image.open(ASSETS / "starry_night.jpg").convert("RGB").resize((style_size, style_size), Image.LANCZOS).save(style)
    return paths, style


def _shape(text):
    """"N" -> (N, N); "WxH" -> (W, H)."""
    w, _, h = str(text).partition("x")
    return int(w), int(h or w)


def _baseline_vm_kib() -> int:
    out = subprocess.run([sys.executable, "-c", "import torch, styleswap_ext; "
                          "print([l for l in open('/proc/self/status') if l.startswith('VmPeak')][0].split()[1])"],
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    return int(out.stdout.strip())


def _describe_decoder(weights) -> str:
    from styleswap_ext.models import load_decoder, packaged_decoder_path

    path = Path(weights) if weights else packaged_decoder_path()
    if path is None:
        raise SystemExit("no trained decoder is installed: pass --decoder-weights PATH")
    decoder = load_decoder(path)  # fails early on a bad file, before any case runs
    return f"{path.name} (instance_norm={decoder.instance_norm})"


def run_case(impl, content, style, out, args, cap_bytes=None, timeout=None):
    argv = ["stylize", str(content), str(style), "-o", str(out), "--method", "decoder",
            "--vgg-weights", str(args.vgg_weights), "--device", args.device, "--precision", args.precision, "-q"]
    if args.decoder_weights:
        argv += ["--decoder-weights", str(args.decoder_weights)]
    if args.tile_size is not None:
        argv += ["--tile-size", str(args.tile_size)]
    cfg = {"impl": impl, "argv": argv, "device": args.device}

    def limit():
        if cap_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=limit, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "timeout_s": timeout}
    wall = time.perf_counter() - start
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    if not line:
        return {"status": "OOM" if "memory" in proc.stderr.lower() or proc.returncode < 0 else "failed",
                "returncode": proc.returncode, "error": err, "process_s": wall}
    res = json.loads(line[0][7:])
    if res["rc"] != 0:
        return {"status": "OOM" if "out of memory" in err else "failed", "error": err, "process_s": wall,
                "peak_rss_gib": res["peak_rss_gib"]}
    res.update(status="ok", process_s=wall)
    return res


def plot(data, path):
    try:
        import matplotlib
    except ImportError:  # not a dependency of the package: the JSON is the result, the plot a view of it
        print("matplotlib is not installed: no plot (python benchmarks/e2e.py --plot-only JSON later)")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))

    def mpix(r):  # x axis: content megapixels, so that non-square cases (3840x2160) fall in place
        w, h = r.get("shape", [r["size"], r["size"]])
        return w * h / 1e6

    def label(r):
        w, h = r.get("shape", [r["size"], r["size"]])
        return f"{w}" if w == h else f"{w}x{h}"

    mem_key = "cuda_peak_gib" if data["device"] == "cuda" else "peak_rss_gib"
    formats = sorted({r.get("format", "png") for r in data["results"]})
    markers = {"ours": "o", "reference": "s"}
    for impl, fmt in ((i, f) for i in markers for f in formats):  # one line per implementation and format
        rows = sorted((r for r in data["results"] if r["impl"] == impl and r.get("format", "png") == fmt), key=mpix)
        if not rows:
            continue
        name = impl if len(formats) == 1 else f"{impl}, {fmt.upper()} output"
        ok = [r for r in rows if r["status"] == "ok"]
        ax_t.plot([mpix(r) for r in ok], [r["run_s"] for r in ok], marker=markers[impl], label=name)
        ax_m.plot([mpix(r) for r in ok], [r[mem_key] for r in ok], marker=markers[impl], label=name)
        if impl == "ours" and fmt == formats[-1]:
            for r in ok:
                ax_t.annotate(label(r), (mpix(r), r["run_s"]), textcoords="offset points", xytext=(-4, 6),
                              ha="right", fontsize=7)
        for r in rows:
            if r["status"] != "ok":
                for ax in (ax_t, ax_m):
                    ax.axvline(mpix(r), color="red", ls=":", lw=1)
                    ax.annotate(f"{impl} {label(r)}: {r['status']}", (mpix(r), 0.5),
                                xycoords=("data", "axes fraction"), rotation=90, color="red", fontsize=7, ha="right")
    for ax, ylabel in ((ax_t, "end-to-end time (s)"), (ax_m, "peak memory (GiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("content size (megapixels)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    if data["device"] == "cpu":
        ax_m.axhline(8, color="grey", ls="--", lw=1)
        ax_m.annotate("8 GiB", (ax_m.get_xlim()[0], 8), textcoords="offset points", xytext=(4, -10), fontsize=7,
                      color="grey")
    fig.suptitle(f"styleswap stylize, {data['style_size']} px style, {data['device']} ({data['machine']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["512", "1024", "2048"],
                    help="content sizes: N (square) or WxH, e.g. 3840x2160")
    ap.add_argument("--style-size", type=int, default=256)
    ap.add_argument("--impls", nargs="+", default=["ours", "reference"], choices=["ours", "reference"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--tile-size", type=int, default=None, help="passed to the CLI (default: its default)")
    ap.add_argument("--formats", nargs="+", default=["png"], choices=["png", "jpg"],
                    help="output file format(s): each is a case of its own (saving a 4096 px PNG takes ~1 s)")
    ap.add_argument("--vgg-weights", default=os.environ.get("STYLESWAP_VGG19_WEIGHTS", str(DEFAULT_VGG)))
    ap.add_argument("--decoder-weights", default=None, help="decoder weights (default: the ones shipped in the package)")
    ap.add_argument("--ref-mem-cap-gib", type=float, default=10.0,
                    help="address-space cap for reference cases on the CPU, over the baseline (default 10)")
    ap.add_argument("--timeout", type=float, default=900, help="per case, seconds")
    ap.add_argument("--json", default=None, help="default benchmarks/results/e2e_<device>.json")
    ap.add_argument("--png", default=None, help="default benchmarks/results/e2e_<device>.png")
    ap.add_argument("--plot-only", default=None, metavar="JSON")
    args = ap.parse_args()
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    if args.plot_only:
        data = json.loads(Path(args.plot_only).read_text())
        plot(data, args.png or Path(args.plot_only).with_suffix(".png"))
        return
    json_path = Path(args.json or out_dir / f"e2e_{args.device}.json")
    png_path = Path(args.png or json_path.with_suffix(".png"))

    import torch

    from styleswap_ext._util.machine import cpu_name

    machine = torch.cuda.get_device_name(0) if args.device == "cuda" else cpu_name()
    data = {"device": args.device, "machine": machine, "torch": torch.__version__, "precision": args.precision,
            "style_size": args.style_size, "tile_size": args.tile_size, "decoder": _describe_decoder(args.decoder_weights),
            "results": []}
    cap = None
    if args.device == "cpu" and "reference" in args.impls:
        cap = _baseline_vm_kib() * 1024 + int(args.ref_mem_cap_gib * 2**30)
        data["reference_as_cap_gib"] = round(cap / 2**30, 2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        contents, style = _make_inputs(tmp, args.sizes, args.style_size)
        for n in args.sizes:
            for impl in args.impls:
                for fmt in args.formats:
                    res = run_case(impl, contents[n], style, tmp / f"out_{impl}_{n}.{fmt}", args,
                                   cap_bytes=cap if impl == "reference" else None, timeout=args.timeout)
                    res.update(impl=impl, size=max(_shape(n)), shape=list(_shape(n)), format=fmt)
                    data["results"].append(res)
                    print(json.dumps(res), flush=True)
                    json_path.write_text(json.dumps(data, indent=1))
    plot(data, png_path)
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()

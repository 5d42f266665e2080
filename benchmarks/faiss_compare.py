"""Our approximate patch search against the FAISS indexes a practitioner would build, on real relu3_1 patches.

    python benchmarks/faiss_compare.py --sizes 512 768 1024 --cache /tmp/approx_exact
    python benchmarks/faiss_compare.py --sizes 512 --pairs 1 --quick      # a smoke run (few settings)

The task is the style swap's: for every 3x3 content patch (D = 2304 values) the style patch of largest
``<c, s> / ||s||`` -- an inner-product search over the normalised style patches, k = 1. Features:
relu3_1 of the photo x painting pairs of ``approx_quality.py`` (centre-cropped square, resized to each
``--size``; the same extraction), float32, stride 1.

Rows (every time includes building the index: each style is searched once by the pipeline):

* ``ours``: ``match_patches(..., search="approximate")`` (principal channels + IVF + exact rerank +
  refinement; ``PatchBank`` build included), default 16 probes;
* ``IVFFlat``: ``faiss.IndexIVFFlat`` (inner product, 2 sqrt(n_s) lists, trained on all style patches) at
  several ``nprobe``;
* ``HNSWFlat``: ``faiss.IndexHNSWFlat`` (M = 32, inner product) at several ``efSearch``;
* ``PCA576+IVF+refine8``: ``index_factory("PCA576,IVF{2 sqrt(n_s)},Flat")`` inside ``IndexRefineFlat``
  (k_factor 8: the 8 best by the reduced code are scored exactly) at several ``nprobe``: the index an
  expert would build for this (reduce, cluster, rerank), and the closest to ours.

For each: wall seconds (build + search), process CPU seconds (all threads; other processes on a shared
machine disturb it less than wall time), the mean over content patches of chosen score / best score
(``ratio``; the best from the exact fused op, ``--cache`` reuses it as approx_quality.py does) and the
fraction of patches whose best was found. Both libraries get the same threads
(``torch.get_num_threads()``). Without faiss (``pip install faiss-cpu``; optional) its rows say
"missing module". ``--out`` writes JSON; the Markdown table is printed (BENCHMARKS.md, "Against FAISS").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from approx_quality import DATA, DEFAULT_VGG, PAIRS, Features, chosen_scores, exact_indices, load_square  # noqa: E402

from styleswap_ext import PatchBank, match_patches  # noqa: E402
from styleswap_ext._util.machine import cpu_name  # noqa: E402
from styleswap_ext.models import load_encoder  # noqa: E402

K = 3
IVF_PROBES = (8, 16, 32, 64)
HNSW_EF = (16, 64, 128)
PCA_PROBES = (8, 16, 32)
PCA_DIMS = 576
REFINE = 8


def _timed(fn):
    """(result, wall seconds, process CPU seconds) of fn()."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _patches(content: torch.Tensor, style: torch.Tensor):
    """Content patches (n_c, D) and normalised style patches (n_s, D), float32 numpy, as the op scores them."""
    c = F.unfold(content, K)[0].T.contiguous()
    s = F.unfold(style, K)[0].T.contiguous()
    s = s / (s.norm(dim=1, keepdim=True) + 1e-8)
    return c.numpy(), s.numpy()


def faiss_rows(queries, base, quick: bool):
    """Yields (index name, setting, indices (n_c,), wall s, cpu s) for each FAISS index and setting, or
    (name, None, None, "missing module", None) without faiss."""
    try:
        import faiss
    except ImportError:
        for name in ("IVFFlat", "HNSWFlat", f"PCA{PCA_DIMS}+IVF+refine{REFINE}"):
            yield name, None, None, "missing module", None
        return
    faiss.omp_set_num_threads(torch.get_num_threads())
    d = base.shape[1]
    nlist = max(1, round(2 * math.sqrt(base.shape[0])))
    ip = faiss.METRIC_INNER_PRODUCT

    def ivf_flat():
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, ip)
        index.train(base)
        index.add(base)
        return index

    def hnsw():
        index = faiss.IndexHNSWFlat(d, 32, ip)
        index.add(base)
        return index

    def pca_ivf_refine():
        index = faiss.IndexRefineFlat(faiss.index_factory(d, f"PCA{PCA_DIMS},IVF{nlist},Flat", ip))
        index.k_factor = REFINE
        index.train(base)
        index.add(base)
        return index

    builds = [("IVFFlat", ivf_flat, "nprobe", IVF_PROBES[1:3] if quick else IVF_PROBES),
              ("HNSWFlat", hnsw, "efSearch", HNSW_EF[1:2] if quick else HNSW_EF),
              (f"PCA{PCA_DIMS}+IVF+refine{REFINE}", pca_ivf_refine, "nprobe", PCA_PROBES[1:2] if quick else PCA_PROBES)]
    for name, build, param, values in builds:
        index, build_s, build_cpu = _timed(build)
        for v in values:
            faiss.ParameterSpace().set_index_parameter(index, param, v)
            (_, idx), search_s, search_cpu = _timed(lambda: index.search(queries, 1))
            yield name, f"{param} {v}", torch.from_numpy(idx[:, 0].copy()), build_s + search_s, build_cpu + search_cpu
        del index


def run_pair(encoder, content_path, style_path, size, cache, quick):
    with torch.no_grad():
        cf = encoder(load_square(content_path, size))
        sf = encoder(load_square(style_path, size))
    key = f"{content_path.stem}__{style_path.stem}__{size}"
    bank = PatchBank(sf, K, 1)
    exact_idx, exact_s, cached = exact_indices(bank, Features(cf, [sf], None, None), key, cache)
    best = chosen_scores(cf, bank, exact_idx)
    n_c, n_s = exact_idx.numel(), bank.num_patches

    def row(method, setting, idx, wall, cpu):
        base = {"content": content_path.name, "style": style_path.name, "size_px": size, "n_c": n_c, "n_s": n_s,
                "method": method, "setting": setting}
        if idx is None:
            return {**base, "status": wall}
        missing = idx < 0  # an IVF search that found no candidate in its lists
        got = chosen_scores(cf, bank, idx.clamp_min(0).view_as(exact_idx))
        got[missing.flatten()] = 0.0
        ratio = torch.where(best > 0, got / best.clamp_min(1e-30), torch.ones_like(best))
        return {**base, "status": "ok", "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                "ratio_mean": round(ratio.mean().item(), 5), "argmax_found": round((got >= best).double().mean().item(), 4),
                "not_found": int(missing.sum())}

    rows = [{**row("exact (fused op)", None, exact_idx, exact_s, float("nan")), "cached": cached, "cpu_s": None}]
    idx, wall, cpu = _timed(lambda: match_patches(cf, sf, K, 1, search="approximate"))
    rows.append(row("ours", "probes 16", idx, wall, cpu))
    queries, base = _patches(cf, sf)
    for method, setting, idx, wall, cpu in faiss_rows(queries, base, quick):
        rows.append(row(method, setting, None if idx is None else idx.view_as(exact_idx), wall, cpu))
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def markdown(rows) -> str:
    """One table per size: method, setting, wall, CPU, ratio, found, and the speed-up of ours over each row."""
    lines = []
    for size in sorted({r["size_px"] for r in rows}):
        group = [r for r in rows if r["size_px"] == size]
        ours = {(r["content"], r["style"]): r for r in group if r["method"] == "ours"}
        lines += [f"\n{size} px (n_c = n_s = {group[0]['n_s']:,} per pair)\n",
                  "| pair | method | setting | wall s (build incl.) | CPU s | ratio mean | best found | ours faster (wall / CPU) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in group:
            pair = " x ".join(Path(r[k]).stem.split("__")[-1].replace("_background", "") for k in ("content", "style"))
            if r["status"] != "ok":
                lines.append(f"| {pair} | {r['method']} | | {r['status']} | | | | |")
                continue
            o = ours[(r["content"], r["style"])]
            speed = ("" if r["method"] == "ours" or r.get("cpu_s") is None else
                     f"{r['wall_s'] / o['wall_s']:.1f}x / {r['cpu_s'] / o['cpu_s']:.1f}x")
            cpu = "" if r.get("cpu_s") is None else f"{r['cpu_s']:.1f}"
            wall = f"{r['wall_s']:.1f}" + (" (cached)" if r.get("cached") else "")
            lines.append(f"| {pair} | {r['method']} | {r['setting'] or ''} | {wall} | {cpu} | {r['ratio_mean']:.4f} | "
                         f"{100 * r['argmax_found']:.1f} % | {speed} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 768, 1024])
    ap.add_argument("--pairs", type=int, default=2, help=f"how many of approx_quality.py's {len(PAIRS)} pairs")
    ap.add_argument("--cache", default=None, help="directory for the exact indices (approx_quality.py's format)")
    ap.add_argument("--quick", action="store_true", help="one or two settings per FAISS index (smoke runs)")
    ap.add_argument("--vgg-weights", default=os.environ.get("STYLESWAP_VGG19_WEIGHTS", str(DEFAULT_VGG)))
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder (content/, style/)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "faiss_compare_cpu.json")
    args = ap.parse_args(argv)
    encoder = load_encoder(args.vgg_weights).eval()
    rows = []
    for size in args.sizes:
        for content, style in PAIRS[:args.pairs]:
            rows += run_pair(encoder, args.data / "content" / content, args.data / "style" / style, size,
                             args.cache, args.quick)
    try:
        import faiss
        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = "missing module"
    report = {"machine": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "faiss": faiss_version, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Quality and speed of the approximate patch search against the exact one, on real relu3_1 features.

    python benchmarks/approx_quality.py                       # 1024 px photos x paintings, 16 probes
    python benchmarks/approx_quality.py --size 512 --pairs 1 --probes 2 4 8 16
    python benchmarks/approx_quality.py --cache /tmp/approx_exact   # reuse the exact indices of an earlier run
    python benchmarks/approx_quality.py --figure docs/approximate_search.jpg   # the docs' picture (bundled images)
    python benchmarks/approx_quality.py --variants --cache /tmp/approx_exact   # what each step of the search adds
    python benchmarks/approx_quality.py --cases weighted multi masked --cache /tmp/approx_exact   # the controls

For each (content photo, style painting) pair from ../shared/data (centre-cropped square, resized to
--size px, encoded by the VGG-19 encoder to relu3_1: 256 channels, k = 3, stride 1, float32):

* ``exact_s``: the exact fused op (``match_patches``) on those features (or its cached time, see
  --cache); ``exact_same_run_s``: the exact op on the first 1/8 of the content rows in this run
  (best of 2), scaled by n_c / n_c(slab) (its cost is linear in n_c); ``approx_s``: the whole
  approximate search (bank, k-means index, search: ``match_patches(..., search="approximate")``),
  with ``build_s`` / ``search_s`` its two parts (a ``PatchBank`` built once, then ``match``);
  ``speedup`` = exact_s / approx_s (None when exact_s is a cached time of another run),
  ``speedup_same_run`` = exact_same_run_s / approx_s (best of 2);
  ``speedup_cpu_time``: the same ratio in process CPU time (both threads), which other processes on a
  shared machine disturb far less than wall time.
* per content patch the chosen score divided by the exact best (``ratio_mean``, ``ratio_p01`` = 1st
  percentile), ``argmax_found`` = the fraction of patches whose chosen score equals the best;
* ``psnr_db``: the image the shipped decoder makes of the approximate swap against the one it makes of
  the exact swap (``pipeline`` modules: swap_gather at alpha 1, then the tiled decode, as ``stylize``).

``--cases``: ``pairs`` (default) are the photo x painting pairs above; ``weighted`` a photo against two
paintings weighted 1 : 3 and 1 : 100 (the first weighted down), ``multi`` a photo against two paintings
1 : 1, ``masked`` region masks: a photo and two paintings each split into its dark and bright half (by
luminance, median-filtered: labels 0 and 1 in every picture), and the bundled cat photo with its hand-drawn
mask (docs/regions_cat_mask.png: the kitten takes The Starry Night, the cloth Van Gogh's painting). With
several styles the exact search is the weighted (labelled) one of ``PatchBank``, ``ratio`` is against its
best (within the content patch's label), ``style_share`` is the fraction of content patches that take each
style (exact and approximate), ``label_crossings`` the content patches given a style patch of another label.

With --cache DIR the exact indices and time of a pair are stored there and reused (the exact op takes
minutes at 1024 px on a 2-core CPU); a reused time is marked ``exact_cached``. Results: JSON in
benchmarks/results/ (``--out``).

``--figure PATH`` instead stylises the bundled cat with The Starry Night (public domain, see
styleswap_ext/apps/assets/CREDITS.md) at 1024 px both ways and writes content | exact | approximate |
|difference| x 4 side by side as a JPEG.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # this tree's styleswap_ext

from styleswap_ext import PatchBank, match_patches  # noqa: E402
from styleswap_ext.pipeline import image_io, masks, tiling  # noqa: E402
from styleswap_ext.models import load_decoder, load_encoder  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DEFAULT_VGG = REPO.parent / "shared" / "weights" / "vgg19_conv1_1-conv3_1_torchvision.pth"
ASSETS = REPO / "styleswap_ext" / "apps" / "assets"
# Photos x paintings: a landscape, a building, a close-up, against brush strokes, flat colour, texture.
PAIRS = [
    ("details__Chenonceau_background.jpg", "details__VincentVanGogh0012_background.jpg"),
    ("details__GizahPyramids_background.jpg", "AdaIN-style__mondrian.jpg"),
    ("details__FanoeWindmill_background.jpg", "details__PortraitOfPereTanguy_background.jpg"),
]


CHENONCEAU, GIZAH, FANOE = (c for c, _ in PAIRS)
VAN_GOGH, MONDRIAN, TANGUY = (s for _, s in PAIRS)


class Case(NamedTuple):
    """A content photo against a bank of styles (``weights``: their weights; ``masks``: None, "luminance"
    or "cat"); paths relative to ../shared/data (or ``ASSETS`` for the bundled ones)."""
    content: str
    styles: tuple
    weights: Optional[tuple] = None
    masks: Optional[str] = None


CASES = {
    "pairs": [Case(c, (s,)) for c, s in PAIRS],
    "weighted": [Case(CHENONCEAU, (VAN_GOGH, MONDRIAN), (1.0, 3.0)), Case(CHENONCEAU, (VAN_GOGH, MONDRIAN), (1.0, 100.0))],
    "multi": [Case(FANOE, (VAN_GOGH, TANGUY))],
    "masked": [Case(CHENONCEAU, (VAN_GOGH, MONDRIAN), masks="luminance"),
               Case("cat.jpg", ("starry_night.jpg", VAN_GOGH), masks="cat")],
}


def image_path(name: str, kind: str) -> Path:
    return ASSETS / name if (ASSETS / name).exists() else DATA / kind / name


def load_square(path: Path, size: int) -> torch.Tensor:
    """(1, 3, size, size) in [0, 1]: the centre square of the image, resized."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    side = min(w, h)
    img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    img = img.resize((size, size), Image.LANCZOS)
    return image_io.uint8_to_float(torch.from_numpy(__import__("numpy").asarray(img)).permute(2, 0, 1)[None])


def chosen_scores(content: torch.Tensor, bank: PatchBank, idx: torch.Tensor) -> torch.Tensor:
    """<c_i, s_idx(i)> * inv_norm[idx(i)] for every content patch (the op's score), in chunks."""
    k = bank.patch_size
    cols = torch.nn.functional.unfold(content, k)[0]  # (D, n_c): stride 1, the grid covers the map exactly
    flat = idx.flatten()
    # the patch rows (a PatchBank on the CPU at stride 1, or an approximate one, keeps none)
    rows = torch.ops.styleswap.prepare_bank([st.detach() for st in bank.styles], k, bank.stride, bank.weights)[0][0]
    out = torch.empty(flat.numel(), dtype=torch.float64)
    for i in range(0, flat.numel(), 8192):
        j = flat[i:i + 8192]
        c = cols[:, i:i + 8192].t().double()
        out[i:i + 8192] = (c * rows[j].double()).sum(1) * bank.inv_norm[0][j].double()
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).double().pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def decode(decoder, feats: torch.Tensor, bank: PatchBank, idx: torch.Tensor) -> torch.Tensor:
    h, w = feats.shape[-2:]
    swapped = torch.ops.styleswap.swap_gather(idx, bank.styles, bank.patch_size, bank.stride, h, w)
    with torch.no_grad():
        return tiling.decode(decoder, swapped, 1024).clamp(0, 1)


def luminance_labels(img: torch.Tensor) -> torch.Tensor:
    """(H, W) labels of a (1, 3, H, W) picture: 1 where it is brighter than its median, else 0, cleaned
    with a 15 px median filter (regions, not speckle)."""
    from PIL import ImageFilter

    lum = (img[0] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    bright = ((lum > lum.median()).byte() * 255).numpy()
    smooth = Image.fromarray(bright).filter(ImageFilter.MedianFilter(15))
    return torch.from_numpy(__import__("numpy").asarray(smooth) > 127).long()


def cat_labels(size: int) -> torch.Tensor:
    """The bundled cat's mask (white = kitten, black = cloth), centre square, resized to size (nearest)."""
    lab, _ = masks.load_labels(REPO / "docs" / "regions_cat_mask.png", "cat mask")
    h, w = lab.shape
    side = min(h, w)
    lab = lab[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    return masks.resize_labels(lab, (size, size))


class Features(NamedTuple):
    content: torch.Tensor
    styles: list
    content_labels: Optional[torch.Tensor]  # on the feature grid
    style_labels: Optional[list]


def encode_case(encoder, case: Case, size: int) -> Features:
    with torch.no_grad():
        c = load_square(image_path(case.content, "content"), size)
        st = [load_square(image_path(name, "style"), size) for name in case.styles]
        cf, sfs = encoder(c), [encoder(x) for x in st]
    grid = lambda f: tuple(f.shape[-2:])  # noqa: E731
    if case.masks is None:
        return Features(cf, sfs, None, None)
    if case.masks == "luminance":
        clab = luminance_labels(c)
        slab = [luminance_labels(x) for x in st]
    else:  # "cat": the kitten (white) takes the first style, the cloth (black) the second
        clab = cat_labels(size)
        slab = [torch.full((size, size), 0xFFFFFF), torch.zeros(size, size, dtype=torch.long)]
    return Features(cf, sfs, masks.resize_labels(clab, grid(cf)),
                    [masks.resize_labels(lab, grid(f)) for lab, f in zip(slab, sfs)])


def case_key(case: Case, size: int) -> str:
    names = "__".join(Path(n).stem for n in (case.content,) + case.styles)
    weights = "" if case.weights is None else "__w" + "_".join(f"{w:g}" for w in case.weights)
    return f"{names}{weights}{'' if case.masks is None else '__' + case.masks}__{size}"


def exact_indices(bank: PatchBank, f: Features, key: str, cache):
    path = Path(cache) / f"{key}.pt" if cache else None
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=True)
        return saved["indices"], saved["seconds"], True
    t0 = time.perf_counter()
    idx = bank.match(f.content, content_labels=f.content_labels)
    seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"indices": idx, "seconds": seconds}, path)
    return idx, seconds, False


def exact_case(encoder, decoder, case: Case, size: int, cache):
    """The case's features, the exact search's indices (and time, and whether it was cached), its bank,
    its chosen scores and its decoded image."""
    f = encode_case(encoder, case, size)
    exact_bank = PatchBank(f.styles, 3, 1, case.weights, style_labels=f.style_labels)
    exact_idx, exact_s, cached = exact_indices(exact_bank, f, case_key(case, size), cache)
    return (f, exact_idx, exact_s, cached, exact_bank, chosen_scores(f.content, exact_bank, exact_idx),
            decode(decoder, f.content, exact_bank, exact_idx))


def style_share(idx: torch.Tensor, styles) -> list:
    """The fraction of content patches that take each style's patches."""
    bounds = torch.tensor([0] + [((st.shape[-2] - 2) * (st.shape[-1] - 2)) for st in styles]).cumsum(0)
    return [round(((idx >= a) & (idx < b)).double().mean().item(), 4) for a, b in zip(bounds[:-1], bounds[1:])]


def run_case(encoder, decoder, case: Case, size, probes_list, cache, seed):
    f, exact_idx, exact_s, cached, exact_bank, best, exact_img = exact_case(encoder, decoder, case, size, cache)
    cf = f.content
    # The exact search on a slab of the first content rows, in this run (its cost is linear in n_c: content
    # tiles are independent): exact_slab_s scaled by n_c / n_c(slab) is the same-run exact time.
    rows = max(3, cf.shape[-2] // 8)
    slab = cf[:, :, :rows]
    slab_labels = None if f.content_labels is None else f.content_labels[:rows]
    slab_n = (slab.shape[-2] - 2) * (slab.shape[-1] - 2)
    slab_s, slab_cpu = [], []
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        exact_bank.match(slab, content_labels=slab_labels)
        slab_s.append(time.perf_counter() - t0)
        slab_cpu.append(time.process_time() - c0)
    exact_same_run = min(slab_s) * exact_idx.numel() / slab_n
    out = []
    for probes in probes_list:
        approx_s = approx_cpu = float("inf")
        for _ in range(2):  # best of 2: the shared machine is noisy
            t0, c0 = time.perf_counter(), time.process_time()
            bank = PatchBank(f.styles, 3, 1, case.weights, style_labels=f.style_labels, search="approximate",
                             probes=probes, seed=seed)
            t1 = time.perf_counter()
            idx = bank.match(cf, content_labels=f.content_labels)
            t2 = time.perf_counter()
            if t2 - t0 < approx_s:
                approx_s, build_s, search_s = t2 - t0, t1 - t0, t2 - t1
            approx_cpu = min(approx_cpu, time.process_time() - c0)
        if len(f.styles) == 1 and f.content_labels is None:
            assert torch.equal(idx, match_patches(cf, f.styles[0], 3, 1, search="approximate", probes=probes,
                                                  seed=seed)), "PatchBank and match_patches chose different patches"
        got = chosen_scores(cf, exact_bank, idx)
        ratio = torch.where(best > 0, got / best.clamp_min(1e-30), torch.ones_like(best))
        row = {
            "content": case.content, "styles": list(case.styles), "weights": case.weights, "masks": case.masks,
            "size_px": size, "n_c": int(idx.numel()), "n_s": exact_bank.num_patches, "probes": probes, "seed": seed,
            "clusters": bank.index.clusters,
            "exact_s": round(exact_s, 2), "exact_cached": cached, "approx_s": round(approx_s, 3),
            "build_s": round(build_s, 3), "search_s": round(search_s, 3),
            "speedup": None if cached else round(exact_s / approx_s, 1),
            "exact_slab_s": round(min(slab_s), 2), "exact_slab_fraction": round(slab_n / exact_idx.numel(), 4),
            "exact_same_run_s": round(exact_same_run, 1), "speedup_same_run": round(exact_same_run / approx_s, 1),
            "approx_cpu_s": round(approx_cpu, 2),
            "speedup_cpu_time": round(min(slab_cpu) * exact_idx.numel() / slab_n / approx_cpu, 1),
            "ratio_mean": round(ratio.mean().item(), 5), "ratio_p01": round(torch.quantile(ratio.float(), 0.01).item(), 5),
            "argmax_found": round((got >= best).double().mean().item(), 4),
            "psnr_db": round(psnr(decode(decoder, cf, exact_bank, idx), exact_img), 2),
        }
        if len(f.styles) > 1:
            row["style_share_exact"], row["style_share"] = style_share(exact_idx, f.styles), style_share(idx, f.styles)
        if f.content_labels is not None:
            want = f.content_labels[1:-1, 1:-1].reshape(-1)  # k = 3, stride 1: a patch's label is its centre's
            row["label_crossings"] = int((exact_bank.bank_labels[idx.flatten()] != want).sum())
            row["label_crossings_exact"] = int((exact_bank.bank_labels[exact_idx.flatten()] != want).sum())
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def variants(encoder, decoder, case: Case, size, cache, seed) -> list:
    """Quality (no timing) of the search's steps on one pair: (probes, reranked candidates, refinement
    passes) around the defaults, on the default index."""
    f, _, _, _, exact_bank, best, exact_img = exact_case(encoder, decoder, case, size, cache)
    cf = f.content
    bank = PatchBank(f.styles, 3, 1, search="approximate", seed=seed)
    rows = []
    for probes, candidates, refine in ((16, 1, 0), (16, 8, 0), (16, 8, 1), (8, 8, 1), (32, 8, 1)):
        idx = torch.ops.styleswap.match_ivf(cf, bank.styles, bank.inv_norm, *bank.index, 3, 1, probes, candidates,
                                            refine)
        got = chosen_scores(cf, exact_bank, idx)
        ratio = torch.where(best > 0, got / best.clamp_min(1e-30), torch.ones_like(best))
        row = {"content": case.content, "style": case.styles[0], "size_px": size, "probes": probes,
               "candidates": candidates, "refine": refine, "ratio_mean": round(ratio.mean().item(), 5),
               "argmax_found": round((got >= best).double().mean().item(), 4),
               "psnr_db": round(psnr(decode(decoder, cf, exact_bank, idx), exact_img), 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def figure(encoder, decoder, path: Path, size: int, probes: int) -> dict:
    """content | exact | approximate | |difference| x 4, each panel half size, as one JPEG."""
    with torch.no_grad():
        c = load_square(ASSETS / "cat.jpg", size)
        cf, sf = encoder(c), encoder(load_square(ASSETS / "starry_night.jpg", size))
    bank = PatchBank(sf, 3, 1)
    exact = decode(decoder, cf, bank, bank.match(cf))
    approx_idx = match_patches(cf, sf, 3, 1, search="approximate", probes=probes)
    approx = decode(decoder, cf, bank, approx_idx)
    panels = [c[0], exact[0], approx[0], ((exact[0] - approx[0]).abs() * 4).clamp(0, 1)]
    strip = torch.cat([torch.nn.functional.interpolate(p[None], scale_factor=0.5, mode="area")[0] for p in panels], 2)
    arr = (strip.permute(1, 2, 0) * 255 + 0.5).clamp(0, 255).byte().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=85)
    # a 256 px crop at full resolution (centre), exact above approximate
    y0 = x0 = size // 2 - 128
    crop = torch.cat([exact[0, :, y0:y0 + 256, x0:x0 + 256], approx[0, :, y0:y0 + 256, x0:x0 + 256]], 1)
    crop_path = path.with_name(path.stem + "_crop.jpg")
    Image.fromarray((crop.permute(1, 2, 0) * 255 + 0.5).clamp(0, 255).byte().numpy()).save(crop_path, quality=90)
    return {"figure": str(path), "crop": str(crop_path), "psnr_db": round(psnr(approx, exact), 2), "probes": probes}


def main(argv=None) -> int:
    global DATA
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="content and style side in px (default 1024)")
    ap.add_argument("--pairs", type=int, default=2, help=f"how many of the {len(PAIRS)} pairs (default 2)")
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["pairs"],
                    help="which cases (default: pairs; --pairs of them)")
    ap.add_argument("--probes", type=int, nargs="+", default=[16])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="directory for the exact indices (reused when present)")
    ap.add_argument("--vgg-weights", default=os.environ.get("STYLESWAP_VGG19_WEIGHTS", str(DEFAULT_VGG)))
    ap.add_argument("--data", type=Path, default=DATA, help=f"the photos and paintings (default {DATA})")
    ap.add_argument("--figure", type=Path, default=None, help="write the docs' side-by-side JPEG here instead")
    ap.add_argument("--variants", action="store_true",
                    help="quality of the search's steps (probes / reranked candidates / refinement) instead")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON results (default: results/approx_quality_cpu.json, with --variants "
                         "results/approx_variants_cpu.json, with cases other than pairs "
                         "results/approx_controls_cpu.json)")
    args = ap.parse_args(argv)
    DATA = args.data
    encoder = load_encoder(args.vgg_weights).eval()
    decoder = load_decoder().eval()
    if args.figure is not None:
        print(json.dumps(figure(encoder, decoder, args.figure, args.size, args.probes[0])))
        return 0
    rows = []
    cases = [c for name in args.cases for c in (CASES[name][:args.pairs] if name == "pairs" else CASES[name])]
    for case in cases:
        if args.variants:
            rows += variants(encoder, decoder, case, args.size, args.cache, args.seed)
        else:
            rows += run_case(encoder, decoder, case, args.size, args.probes, args.cache, args.seed)
    if args.out is None:
        name = ("approx_variants_cpu.json" if args.variants else
                "approx_quality_cpu.json" if args.cases == ["pairs"] else "approx_controls_cpu.json")
        args.out = HERE / "results" / name
    report = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                         f"{torch.get_num_threads()} threads, torch {torch.__version__}",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

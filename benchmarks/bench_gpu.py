"""GPU benchmark of the fused style swap against its peers (issue 3, "Performance").

Columns, for 256-channel features, k=3, s=1, content and style maps of the given sides:
  conv   the paper's formulation (styleswap_ext.ops.reference.style_swap: conv2d -> argmax -> one-hot ->
         conv_transpose2d); skipped and marked "OOM" where its n_c x n_s tensors cannot fit
  peer   chunked torch.mm: normalised style-patch matrix once, content patches 8192 rows at a time
         through torch.mm, argmax, then gather + F.fold / overlap count
  gemm   the bare cuBLAS product of the same n_c x D x n_s shape, 8192 rows at a time (the floor)
  ours   styleswap_ext.style_swap (match + gather), default match kernel
  ours_K the same op with STYLESWAP_MATCH_KERNEL=K (--kernels): the tiled cuBLAS driver "cublas" /
         "cublas_fused" (issue 25) or the hand-written Hopper kernels "wgmma" / "tma"
each in the same precision: "tf32" (float32 inputs, float32_matmul_precision "high", cuDNN TF32),
"bf16" (bfloat16 inputs) and "highest" (float32, true-fp32 scores). Time = median of CUDA-event
timings after a warm-up; peak = torch.cuda.max_memory_allocated during one run minus what was
allocated before it (inputs excluded), in GiB.

Writes JSON (--out) and prints a table last. --dry-run exercises every code path on the CPU with
tiny sizes (no timing value), so a typo cannot cost GPU time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import styleswap_ext
from styleswap_ext.ops import reference

K, S = 3, 1
ROWS = 8192
GIB = 1024**3

# Cases: (content map side, style map side); image px = 4 x map side (relu3_1).
DEFAULT_CASES = [(64, 64), (128, 128), (192, 192), (256, 256), (1024, 256)]


def mode_dtype(mode: str) -> torch.dtype:
    return torch.bfloat16 if mode == "bf16" else torch.float32


def set_precision(mode: str) -> None:
    torch.set_float32_matmul_precision("highest" if mode == "highest" else "high")
    torch.backends.cudnn.allow_tf32 = mode != "highest"


def patch_counts(hc: int, hs: int, c: int):
    n_c = ((hc - K + S - 1) // S + 1) ** 2
    n_s = ((hs - K) // S + 1) ** 2
    return n_c, n_s, c * K * K


# --- the peers ------------------------------------------------------------------------------------


class Peer:
    """Chunked torch.mm + argmax + fold. Style preparation is part of the timed call."""

    def __init__(self, rows: int = ROWS):
        self.rows = rows

    def __call__(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        _, c, h, w = content.shape
        sp = F.unfold(style, K, stride=S)[0].t()  # (n_s, D) raw style patches
        n_s = sp.shape[0]
        norm = sp.float().norm(dim=1)
        pad = (-n_s) % 8  # cuBLAS bf16 needs multiples of 8 for its fast path
        spn = torch.zeros(n_s + pad, sp.shape[1], dtype=sp.dtype, device=sp.device)
        spn[:n_s] = (sp.float() / (norm + 1e-8)[:, None]).to(sp.dtype)
        cp = F.unfold(content, K, stride=S)[0].t()  # (n_c, D); s=1: the grid already covers
        n_c = cp.shape[0]
        idx = torch.empty(n_c, dtype=torch.long, device=content.device)
        for r0 in range(0, n_c, self.rows):
            sc = torch.mm(cp[r0 : r0 + self.rows], spn.t())
            idx[r0 : r0 + self.rows] = sc[:, :n_s].argmax(dim=1)
        chosen = sp[idx]  # (n_c, D)
        out = F.fold(chosen.t()[None], (h, w), K, stride=S)
        ones = torch.ones(1, K * K, n_c, dtype=content.dtype, device=content.device)
        count = F.fold(ones, (h, w), K, stride=S)
        return out / count

    def indices(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        sp = F.unfold(style, K, stride=S)[0].t()
        spn = (sp.float() / (sp.float().norm(dim=1) + 1e-8)[:, None]).to(sp.dtype)
        cp = F.unfold(content, K, stride=S)[0].t()
        return torch.cat([torch.mm(cp[r0 : r0 + self.rows], spn.t()).argmax(1) for r0 in range(0, cp.shape[0], self.rows)])


class Gemm:
    """The bare product n_c x D x n_s, 8192 content rows at a time into one reused buffer."""

    def __init__(self, content: torch.Tensor, style: torch.Tensor, rows: int = ROWS):
        self.cp = F.unfold(content, K, stride=S)[0].t().contiguous()
        sp = F.unfold(style, K, stride=S)[0].t()
        n_s = sp.shape[0]
        self.spt = torch.zeros(n_s + (-n_s) % 8, sp.shape[1], dtype=sp.dtype, device=sp.device)
        self.spt[:n_s] = sp
        self.spt = self.spt.t()
        self.rows = rows
        self.buf = torch.empty(min(rows, self.cp.shape[0]), self.spt.shape[1], dtype=sp.dtype, device=sp.device)

    def __call__(self, *_):
        n_c = self.cp.shape[0]
        for r0 in range(0, n_c, self.rows):
            m = min(self.rows, n_c - r0)
            torch.mm(self.cp[r0 : r0 + m], self.spt, out=self.buf[:m])
        return self.buf


def ours(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    return styleswap_ext.style_swap(content, style, K, S)


def conv_ref(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    return reference.style_swap(content, style, K, S)


def conv_ref_bytes(n_c: int, n_s: int, elem: int) -> int:
    # scores (elem) + argmax + one-hot int64 + one-hot in dtype (elem) + cuDNN workspace slack
    return n_c * n_s * (2 * elem + 8) + 2 * GIB


# --- measurement ----------------------------------------------------------------------------------


SLOW_MS = 5000  # a warm-up slower than this is the only run timed (bf16 conv reference at 1024 px: 32 s)


def measure(fn: Callable, args, repeats: int, device: str) -> dict:
    """One warm-up run that also records the peak memory, then `repeats` timed runs (median); when
    the warm-up alone takes over SLOW_MS, its time is the result (``single_run``), so that one
    pathological case cannot eat a GPU session's time budget."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        end.record()
        end.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / GIB
        warm_ms = start.elapsed_time(end)
        if warm_ms > SLOW_MS:
            return {"status": "ok", "time_ms": warm_ms, "times_ms": [warm_ms], "peak_gib": peak, "single_run": True}
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(*args)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        fn(*args)
        peak = float("nan")
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(*args)
            times.append((time.perf_counter() - t0) * 1e3)
    return {"status": "ok", "time_ms": statistics.median(times), "times_ms": times, "peak_gib": peak}


def run_impl(name: str, fn: Callable, args, repeats: int, device: str) -> dict:
    try:
        return measure(fn, args, repeats, device)
    except torch.cuda.OutOfMemoryError:
        return {"status": "OOM"}
    except Exception as e:  # noqa: BLE001 -- record and go on: one failure must not lose the run
        return {"status": f"error: {type(e).__name__}: {e}"[:300]}
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()


def repeats_for(tflop: float, base: int) -> int:
    if tflop > 50:
        return max(1, base // 3)
    if tflop > 5:
        return max(2, base // 2)
    return base


KERNELS = ("cublas", "cublas_fused", "wgmma", "tma")  # STYLESWAP_MATCH_KERNEL values --kernels takes
TILED = ("cublas", "cublas_fused")  # the tiled driver: every CUDA GPU, every mode


def _wgmma_available(device: str) -> bool:
    from styleswap_ext import _C

    return device == "cuda" and bool(_C.wgmma_available(torch.cuda.current_device()))


def _kernel_runs(kernel: str, mode: str, device: str) -> bool:
    """Whether STYLESWAP_MATCH_KERNEL=kernel selects that kernel here (the Hopper kernels have no
    "highest" mode and fall back elsewhere; on the CPU (--dry-run) the variable changes nothing, the
    tiled paths are still walked through so the code is exercised)."""
    if kernel in TILED:
        return True
    return mode != "highest" and _wgmma_available(device)


def conv_wanted(conv_at: Optional[set], hc: int, hs: int, mode: str) -> bool:
    """--conv-at: run the conv reference only at these "content:style:mode" cases (None = everywhere)."""
    return conv_at is None or f"{hc}:{hs}:{mode}" in conv_at


def bench_case(hc: int, hs: int, mode: str, channels: int, device: str, repeats: int, skip: set,
               kernels: tuple = (), conv_at: Optional[set] = None, tile_sweep: tuple = (),
               sweep_at: tuple = (256, 256)) -> dict:
    set_precision(mode)
    dtype = mode_dtype(mode)
    n_c, n_s, d = patch_counts(hc, hs, channels)
    tflop = 2.0 * n_c * n_s * d / 1e12
    g = torch.Generator(device="cpu").manual_seed(hc * 1000 + hs)
    content = torch.randn(1, channels, hc, hc, generator=g).to(device=device, dtype=dtype)
    style = torch.randn(1, channels, hs, hs, generator=g).to(device=device, dtype=dtype)
    rec = {
        "content_px": 4 * hc, "style_px": 4 * hs, "content_map": hc, "style_map": hs, "channels": channels,
        "mode": mode, "n_c": n_c, "n_s": n_s, "D": d, "tflop": tflop, "results": {},
    }
    reps = repeats_for(tflop, repeats)
    elem = torch.tensor([], dtype=dtype).element_size()
    free = torch.cuda.mem_get_info()[0] if device == "cuda" else 1 << 62

    if "conv" in skip or not conv_wanted(conv_at, hc, hs, mode):
        rec["results"]["conv"] = {"status": "skipped"}
    elif conv_ref_bytes(n_c, n_s, elem) > free:
        rec["results"]["conv"] = {"status": "OOM", "note": f"needs ~{conv_ref_bytes(n_c, n_s, elem) / GIB:.0f} GiB"}
    else:
        rec["results"]["conv"] = run_impl("conv", conv_ref, (content, style), max(1, min(reps, 3)), device)

    rec["results"]["peer"] = run_impl("peer", Peer(), (content, style), reps, device) if "peer" not in skip else {"status": "skipped"}
    if "gemm" not in skip:
        try:
            gemm = Gemm(content, style)
            rec["results"]["gemm"] = run_impl("gemm", gemm, (), reps, device)
            del gemm
        except torch.cuda.OutOfMemoryError:
            rec["results"]["gemm"] = {"status": "OOM"}
    rec["results"]["ours"] = run_impl("ours", ours, (content, style), reps, device)
    if "tiles" not in skip and hc >= 128:
        # The other compiled block shape of the fused kernel (128x128 tiles, 2 blocks/SM); the
        # default is 128x256. The winner should become the default in match_cuda.cu.
        os.environ["STYLESWAP_MATCH_TILE"] = "128"
        try:
            rec["results"]["ours_t128"] = run_impl("ours_t128", ours, (content, style), reps, device)
        finally:
            del os.environ["STYLESWAP_MATCH_TILE"]

    for kernel in (kk for kk in kernels if _kernel_runs(kk, mode, device)):
        # Another match path, same op, same inputs: the tiled cuBLAS driver (issue 25) or an experimental
        # Hopper kernel (csrc/cuda/match_wgmma.cu). Only with --kernels, for those whose tests passed
        # (gpu_check.sh runs the CUDA suite with each one first).
        name = f"ours_{kernel}"
        os.environ["STYLESWAP_MATCH_KERNEL"] = kernel
        small = n_c * n_s <= 256 * 256 * 256 * 256  # agreement only where a second search is cheap
        try:
            rec["results"][name] = run_impl(name, ours, (content, style), reps, device)
            a = styleswap_ext.match_patches(content, style, K, S) if small else None
        except Exception as e:  # noqa: BLE001
            a = None
            rec[f"{kernel}_index_agreement_with_wmma"] = f"error: {e}"[:200]
        finally:
            del os.environ["STYLESWAP_MATCH_KERNEL"]
        if a is not None:
            b = styleswap_ext.match_patches(content, style, K, S)
            rec[f"{kernel}_index_agreement_with_wmma"] = (a == b).float().mean().item()

    if "cublas_fused" in kernels and (hc, hs) == sweep_at and mode != "highest":
        # Tile shapes of the tiled driver (STYLESWAP_TILED_TILE="ROWS,COLS", read per call), fused reduce:
        # a float32 score tile of ROWS x COLS x 4 bytes should stay in L2 (50-60 MB on H100/H200).
        for tiles in tile_sweep:
            os.environ["STYLESWAP_MATCH_KERNEL"], os.environ["STYLESWAP_TILED_TILE"] = "cublas_fused", tiles
            try:
                rec["results"][f"ours_cublas_fused@{tiles}"] = run_impl("sweep", ours, (content, style), reps, device)
            finally:
                del os.environ["STYLESWAP_MATCH_KERNEL"], os.environ["STYLESWAP_TILED_TILE"]

    if "bank" not in skip:
        # A PatchBank prepared once (as for video frames): the per-content cost without the bank build.
        bank = styleswap_ext.PatchBank(style, K, S)
        rec["results"]["ours_bank"] = run_impl("ours_bank", bank.swap, (content,), reps, device)
        del bank

    # Sanity: agreement of our indices with the peer's (both exact searches in the same precision).
    if n_c * n_s <= 256 * 256 * 256 * 256 and "agree" not in skip:
        try:
            a = styleswap_ext.match_patches(content, style, K, S).flatten()
            b = Peer().indices(content, style)
            rec["index_agreement_with_peer"] = (a == b).float().mean().item()
        except Exception as e:  # noqa: BLE001
            rec["index_agreement_with_peer"] = f"error: {e}"[:200]
    for r in rec["results"].values():
        if r.get("status") == "ok":
            r["tflops"] = tflop / (r["time_ms"] / 1e3)
    gemm_t = rec["results"].get("gemm", {}).get("time_ms")
    ours_t = rec["results"]["ours"].get("time_ms")
    if gemm_t and ours_t:
        rec["ours_over_gemm"] = ours_t / gemm_t
    for name, r in rec["results"].items():
        if name.startswith("ours_") and gemm_t and r.get("time_ms"):
            rec[f"{name}_over_gemm"] = r["time_ms"] / gemm_t
    for other in ("conv", "peer"):
        t = rec["results"].get(other, {}).get("time_ms")
        if t and ours_t:
            rec[f"speedup_vs_{other}"] = t / ours_t
    return rec


def evaluate_bars(records: list) -> list:
    """The issue's performance bars, for the default kernel ('ours') and each experimental kernel
    timed in the same run ('ours_wgmma', 'ours_tma')."""
    out = []

    def t(rec, name):
        r = rec["results"].get(name, {})
        return r.get("time_ms") if r.get("status") == "ok" else None

    for rec in records:
        mode, hc, hs = rec["mode"], rec["content_map"], rec["style_map"]
        if mode not in ("tf32", "bf16"):
            continue
        for impl in ("ours",) + tuple(f"ours_{k}" for k in KERNELS):
            ours_t = t(rec, impl)
            if ours_t is None:
                continue
            case = f"{rec['content_px']}x{rec['style_px']} {mode}" + ("" if impl == "ours" else f" {impl[5:]}")
            if hc == hs and hc >= 128 and t(rec, "peer"):
                out.append((case, "ours faster than peer", ours_t < t(rec, "peer"),
                            f"{ours_t:.2f} vs {t(rec, 'peer'):.2f} ms"))
            if hc == hs == 256:
                if t(rec, "gemm"):
                    out.append((case, "ours <= 1.25x gemm", ours_t <= 1.25 * t(rec, "gemm"), f"{ours_t / t(rec, 'gemm'):.2f}x"))
                conv = rec["results"].get("conv", {})
                if conv.get("status") == "ok":
                    out.append((case, ">= 2.5x faster than conv", conv["time_ms"] >= 2.5 * ours_t,
                                f"{conv['time_ms'] / ours_t:.2f}x"))
                elif conv.get("status") not in (None, "skipped"):
                    out.append((case, ">= 2.5x faster than conv", True, f"conv {conv.get('status')}"))
                peak = rec["results"][impl].get("peak_gib", float("nan"))
                out.append((case, "<= 1 GiB peak extra", peak <= 1.0, f"{peak:.3f} GiB"))
                # Issue 25's bars for the default (stricter): <= 1.15x (TF32) / 1.25x (bf16) the GEMM, >= 3x conv.
                ratio = 1.15 if mode == "tf32" else 1.25
                if t(rec, "gemm") and ratio < 1.25:
                    out.append((case, f"#25 <= {ratio}x gemm", ours_t <= ratio * t(rec, "gemm"),
                                f"{ours_t / t(rec, 'gemm'):.2f}x"))
                if conv.get("status") == "ok":
                    out.append((case, "#25 >= 3x faster than conv", conv["time_ms"] >= 3 * ours_t,
                                f"{conv['time_ms'] / ours_t:.2f}x"))
            if hc == 1024 and hs == 256:
                limit = 1200.0 if mode == "tf32" else 550.0
                out.append((case, f"<= {limit:.0f} ms", ours_t <= limit, f"{ours_t:.1f} ms"))
                limit = 1050.0 if mode == "tf32" else 500.0
                out.append((case, f"#25 <= {limit:.0f} ms", ours_t <= limit, f"{ours_t:.1f} ms"))
    return [{"case": c, "bar": b, "pass": bool(p), "value": v} for c, b, p, v in out]


def fmt(r: Optional[dict]) -> str:
    if not r:
        return "-"
    if r.get("status") != "ok":
        return r.get("status", "?")[:18]
    peak = r.get("peak_gib", float("nan"))
    peak_s = "" if math.isnan(peak) else f" ({peak:.2f}G)"
    once = "*" if r.get("single_run") else ""  # one run only (see SLOW_MS)
    return f"{r['time_ms']:.2f}ms{once}{peak_s}"


def print_table(records: list) -> None:
    cols = [("conv", "conv"), ("peer", "peer"), ("gemm", "gemm"), ("ours", "ours"), ("ours_t128", "ours 128x128"),
            ("ours_bank", "ours, bank reused"), ("ours_cublas", "ours cublas"), ("ours_cublas_fused", "ours cublas_fused"),
            ("ours_wgmma", "ours wgmma (exp.)"), ("ours_tma", "ours tma (exp.)")]
    head = f"{'case':>12} {'mode':>7} {'TFLOP':>7} | " + " | ".join(f"{h:>18}" for _, h in cols) + " | ours/gemm"
    print(head)
    print("-" * len(head))
    for rec in records:
        res = rec["results"]
        ratio = rec.get("ours_over_gemm")
        print(
            f"{rec['content_px']:>5}x{rec['style_px']:<6} {rec['mode']:>7} {rec['tflop']:>7.2f} | "
            + " | ".join(f"{fmt(res.get(k)):>18}" for k, _ in cols)
            + f" | {'-' if ratio is None else f'{ratio:.2f}'}"
        )
        sweep = {k.split("@")[1]: fmt(v) for k, v in res.items() if "@" in k}
        if sweep:
            print(f"{'':>28} tile sweep (cublas_fused, ROWS,COLS): " + "; ".join(f"{k} {v}" for k, v in sweep.items()))


def report(records: list) -> None:
    for b in evaluate_bars(records):
        print(f"{'PASS' if b['pass'] else 'FAIL'}  {b['case']:>22}  {b['bar']:<28} {b['value']}")
    print_table(records)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench.json", help="JSON output path")
    p.add_argument("--cases", default=None, help="content:style map sides, e.g. '64:64,256:256,1024:256'")
    p.add_argument("--modes", default="tf32,bf16", help="comma list of tf32,bf16,highest")
    p.add_argument("--highest-case", default="128:128", help="case also run in 'highest' ('' to skip)")
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--skip", default="", help="comma list of conv,peer,gemm,agree,tiles,bank to leave out")
    p.add_argument("--kernels", default="",
                   help="comma list of other match paths to time as well (STYLESWAP_MATCH_KERNEL values: "
                        "cublas, cublas_fused, wgmma, tma) where they are available")
    p.add_argument("--conv-at", default=None,
                   help="run the conv reference only at these content:style:mode cases, e.g. '256:256:tf32' "
                        "(default: every case; '' = none)")
    p.add_argument("--tile-sweep", default="",
                   help="space-separated ROWS,COLS tiles of the tiled driver to time at 256:256 (--dry-run: its first case) with cublas_fused "
                        "(STYLESWAP_TILED_TILE), e.g. '4096,2048 8192,1024 2048,4096'")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the code paths only")
    p.add_argument("--table-from", default=None, help="only print the bars and table of an existing JSON file")
    return p.parse_args(argv)


def parse_cases(text: Optional[str]):
    if not text:
        return list(DEFAULT_CASES)
    out = []
    for item in text.split(","):
        hc, hs = item.split(":")
        out.append((int(hc), int(hs)))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.table_from:
        with open(args.table_from) as f:
            records = json.load(f)["records"]
        report(records)
        return 0
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in ("tf32", "bf16", "highest"):
            raise SystemExit(f"unknown mode {m!r}")
    skip = {s for s in args.skip.split(",") if s}
    kernels = tuple(k for k in args.kernels.split(",") if k)
    for k in kernels:
        if k not in KERNELS:
            raise SystemExit(f"unknown kernel {k!r} (--kernels takes {', '.join(KERNELS)})")
    conv_at = None if args.conv_at is None else {c for c in args.conv_at.split(",") if c}
    tile_sweep = tuple(args.tile_sweep.split())
    for tiles in tile_sweep:
        r, _, c = tiles.partition(",")
        if not (r.isdigit() and c.isdigit() and int(r) > 0 and int(c) > 0):
            raise SystemExit(f"bad --tile-sweep entry {tiles!r} (ROWS,COLS, both > 0)")
    if args.dry_run:
        device, channels, repeats = "cpu", 4, 1
        cases = [(9, 8), (128, 12)]
        highest = [(9, 8)]
    else:
        if not torch.cuda.is_available():
            raise SystemExit("bench_gpu.py needs a CUDA GPU (use --dry-run to check it on the CPU)")
        if not styleswap_ext.CUDA_BUILT:
            raise SystemExit("styleswap_ext was built without CUDA kernels: rebuild with FORCE_CUDA=1")
        device, channels, repeats = "cuda", args.channels, args.repeats
        cases = parse_cases(args.cases)
        highest = parse_cases(args.highest_case) if args.highest_case else []

    meta = {
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
        "k": K, "s": S, "rows_per_chunk": ROWS, "dry_run": args.dry_run,
    }
    records = []
    plan = [(hc, hs, m) for (hc, hs) in cases for m in modes] + [(hc, hs, "highest") for (hc, hs) in highest]
    for hc, hs, mode in plan:
        t0 = time.perf_counter()
        rec = bench_case(hc, hs, mode, channels, device, repeats, skip, kernels, conv_at, tile_sweep,
                         cases[0] if args.dry_run else (256, 256))
        rec["wall_s"] = time.perf_counter() - t0
        records.append(rec)
        print(f"[bench] {4 * hc}x{4 * hs}px {mode}: ours {fmt(rec['results']['ours'])} "
              f"({rec['wall_s']:.1f}s wall)", file=sys.stderr, flush=True)
        with open(args.out, "w") as f:  # written after every case: a timeout keeps what was done
            json.dump({"meta": meta, "records": records}, f, indent=1)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "records": records, "bars": evaluate_bars(records)}, f, indent=1)
    report(records)
    failed = [r for r in records if r["results"]["ours"].get("status") != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

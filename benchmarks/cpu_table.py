"""Time and peak memory of every style-swap method on the CPU, printed as a table with ratios.

    python benchmarks/cpu_table.py                    # 32, 64, 96, 128 maps (128 = a 512 px image)
    python benchmarks/cpu_table.py --sizes 32 64 --json out.json

Each (method, size) runs in a fresh process, so the peak-memory figure is that method's own:
the peak resident set size during the call minus the resident size just before it (Linux
/proc/self/clear_refs resets the peak). The inputs are made before the measurement starts. One
timed call per case after a warm-up on a small input (a 128 x 128 map takes seconds per call).
Ratios are against the bare GEMM of the same shape, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def measure(method: str, size: int, channels: int) -> dict:
    """Runs in the child process."""
    sys.path.insert(0, HERE)
    import methods

    fn = methods.METHODS[method]
    fn(*methods.features(12, channels, seed=1))  # warm-up: library loading, thread pools
    content, style = methods.features(size, channels)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _rss_kib("VmRSS")
    t0 = time.perf_counter()
    fn(content, style)
    seconds = time.perf_counter() - t0
    peak = _rss_kib("VmHWM")
    return {"method": method, "size": size, "seconds": seconds, "peak_extra_mib": (peak - before) / 1024}


def run_case(method: str, size: int, channels: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", method, str(size), str(channels)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        reason = "missing module" if "ModuleNotFoundError" in proc.stderr else proc.stderr.strip().splitlines()[-1:]
        return {"method": method, "size": size, "error": str(reason)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch

    from styleswap_ext._util.machine import cpu_name

    return f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 128], help="feature-map sides")
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--methods", nargs="+", default=["gemm", "fused", "chunked_torch", "conv_reference", "faiss"])
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), int(args.child[2]))))
        return

    results = []
    print(f"# {machine()}", flush=True)
    header = "| map | patches | " + " | ".join(f"{m} s (x gemm) [MiB]" for m in args.methods) + " |"
    print(header)
    print("|" + "---|" * (2 + len(args.methods)))
    for size in args.sizes:
        row = {m: run_case(m, size, args.channels) for m in args.methods}
        results.extend(row.values())
        floor = row.get("gemm", {}).get("seconds")
        cells = []
        for m in args.methods:
            r = row[m]
            if "error" in r:
                cells.append(f"n/a ({r['error']})")
            else:
                ratio = f" ({r['seconds'] / floor:.2f}x)" if floor else ""
                cells.append(f"{r['seconds']:.3f}{ratio} [{r['peak_extra_mib']:.0f}]")
        n = (size - 2) ** 2
        print(f"| {size}² | {n:,} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

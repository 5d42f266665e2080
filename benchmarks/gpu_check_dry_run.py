"""Dry runs of benchmarks/gpu_check.sh on the CPU: what it runs, in which order, and whether it fits
its budget, before a GPU session spends device time on it.

    python benchmarks/gpu_check_dry_run.py                    # PRESET=tiled with the estimated times below
    python benchmarks/gpu_check_dry_run.py --set bench=1000   # the bench runs into its cap: does the sanitizer still run?
    python benchmarks/gpu_check_dry_run.py --env STEPS="tests kernels" --env EXP_KERNELS=cublas

The script runs from a copy in a scratch directory (its build step deletes build/ and _C*.so where it
runs), with PYTHON and SANITIZER naming this file as a stub and GPU_CHECK_CLOCK a simulated clock: each
stub call advances the clock by its estimated time on the GPU machine (ESTIMATES), or, where that is
more than the command's cap (GPU_CHECK_CAP), by the cap, and then exits 124 as `timeout` would. Nothing
sleeps: the 440 s preset dry-runs in a few seconds, and its summary shows which steps ran, in which
order, what was cut for time, and the simulated end.

Without a clock (tests/test_gpu_check.py) the stub runs `-m pytest` for real, on the stand-in test
files in the scratch copy's tests/, answers the `-c` probes as a CUDA build would, and every other
command (bench, sanitizer) only logs its arguments (STUB_LOG, one JSON line per call).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Seconds on the GPU machine (an H100/H200 with 16 CPU cores), per kind of command. Where they come
# from: the first GPU session (2026-11-27, H200, docs/gpu_session.md and benchmarks/CUDA_NOTES.md §6)
# and, for the tests added since, their sizes (docs/gpu_session.md, "Budget").
ESTIMATES = {
    "probe": 3,  # python -c: import torch + the extension, CUDA context
    "build": 45,  # setup.py build_ext, 16 jobs: 41 s on the H200 (+ match_reduce.cu since)
    "tests:test_cuda": 45,  # the default path's CUDA suite, -k "not experimental": ~45 s on the H200
    "tests:test_patch_bank": 30,
    "tests:test_regions": 10,  # -k cuda: 2 tiny tests; process start + CPU references dominate
    "tests:test_approx": 10,  # -k cuda: 2 tiny tests, likewise
    "own:cublas": 25,  # 5 modes of test_experimental_tiled_path + the 1024 px test (~6 s of GPU work)
    "own:cublas_fused": 25,
    "own:tma": 15,  # 3 modes of test_experimental_hopper_kernel
    "own:wgmma": 15,
    "path:test_cuda": 35,  # the CUDA suite with STYLESWAP_MATCH_KERNEL set: 30-40 s on the H200
    "path:test_patch_bank": 30,
    "bench": 60,  # 3 cases x TF32/bf16, conv only at 512/1024 px TF32, the passing paths
    "sweep": 20,  # 1024 px, TF32 and bf16: default, GEMM, cublas_fused and 4 tile shapes
    "memcheck": 20,  # sanitize_small.py: 15-20 s per tool on the H200, plus the tiled private-op calls
    "racecheck": 25,
    "e2e": 25,  # one e2e.py call: the 4096 px and 3840x2160 bar cases, JPEG (~20 s per kernel, 2026-11-27)
    "stages": 40,
    "quality": 100,  # docs/gpu_session.md's QUALITY_S
    "other": 5,
}


# --- the stub -------------------------------------------------------------------------------------


def _kind(role: str, argv: list, env) -> str:
    """Which ESTIMATES entry a stubbed command is."""
    if role == "sanitizer":
        return argv[argv.index("--tool") + 1] if "--tool" in argv else "memcheck"
    if argv[:1] == ["-c"]:
        return "probe"
    if argv[:1] == ["setup.py"]:
        return "build"
    if argv[:2] == ["-m", "pytest"]:
        path = next((a for a in argv if a.endswith(".py")), "")
        name = Path(path).stem
        kexpr = argv[argv.index("-k") + 1] if "-k" in argv else ""
        if re.search(r"(^|\()experimental and (\w+)", kexpr):
            return "own:" + re.search(r"experimental and (\w+)", kexpr).group(1)
        return ("path:" if env.get("STYLESWAP_MATCH_KERNEL") else "tests:") + name
    script = Path(argv[0]).stem if argv else ""
    if script == "bench_gpu":
        return "sweep" if "--tile-sweep" in argv else "bench"
    if script in ("e2e", "quality_report", "e2e_stages"):
        return {"e2e": "e2e", "quality_report": "quality", "e2e_stages": "stages"}[script]
    if argv[:2] == ["-m", "styleswap_ext"] and "--time-limit" in argv:  # train-decoder: until its limit
        return "train:" + argv[argv.index("--time-limit") + 1]
    return "other"


def _pytest_output(argv: list, seconds: int) -> str:
    path = next((a for a in argv if a.endswith(".py")), "tests/x.py")
    return f"{path}::test_stub PASSED\n==== 1 passed in {seconds}.00s ====\n"


def stub(role: str, argv: list) -> int:
    env = os.environ
    kind = _kind(role, argv, env)
    if env.get("STUB_LOG"):
        with open(env["STUB_LOG"], "a") as f:
            f.write(json.dumps({"role": role, "kind": kind, "argv": argv, "cap": env.get("GPU_CHECK_CAP"),
                                "kernel": env.get("STYLESWAP_MATCH_KERNEL")}) + "\n")
    clock = env.get("GPU_CHECK_CLOCK")
    if clock is None:  # a real-time run: real pytest on the stand-in files, the rest answered at once
        if kind.startswith(("tests:", "own:", "path:")):
            os.execv(sys.executable, [sys.executable, *argv])
        if kind == "probe":
            return _probe(argv[1], built=True)
        print(f"stub {role}: {' '.join(argv)}")
        return 0
    overrides = json.loads(env.get("DRY_ESTIMATES", "{}"))
    est = int(kind[6:]) + 10 if kind.startswith("train:") else overrides.get(kind, ESTIMATES.get(kind, ESTIMATES["other"]))
    cap = int(env.get("GPU_CHECK_CAP", 10**9))
    spent = min(est, cap)
    t = int(Path(clock).read_text()) + spent
    Path(clock).write_text(str(t))
    if est > cap:
        return 124
    if kind == "probe":
        return _probe(argv[1], built=env.get("STUB_BUILT") == "1")
    if kind.startswith(("tests:", "own:", "path:")):
        print(_pytest_output(argv, spent), end="")
    elif role == "sanitizer":
        print("========= ERROR SUMMARY: 0 errors" if kind == "memcheck" else "========= RACECHECK SUMMARY: 0 hazards")
    return 0


def _probe(code: str, built: bool) -> int:
    """The script's `python -c` probes, answered as on a GPU machine (the build one as `built` says)."""
    if "sys.exit(0 if styleswap_ext.CUDA_BUILT" in code:
        return 0 if built else 1
    if "wgmma_available" in code:
        print("wgmma_available True")
    elif "import ok" in code:
        print("import ok True")
    else:
        print("torch (stub) cuda (stub) GPU (stub)")
    return 0


# --- the dry run ----------------------------------------------------------------------------------


def scratch_copy(root: Path, tests: dict | None = None) -> Path:
    """A copy of the script under root/benchmarks/ and the stand-in test files `tests` {name: source}
    under root/tests/; returns the script's path."""
    (root / "benchmarks").mkdir(parents=True, exist_ok=True)
    (root / "tests").mkdir(exist_ok=True)
    script = root / "benchmarks" / "gpu_check.sh"
    shutil.copy(REPO / "benchmarks" / "gpu_check.sh", script)
    for name, source in (tests or {}).items():
        (root / "tests" / f"{name}.py").write_text(source)
    return script


def stub_env(root: Path, clock: int | None = 1_000_000) -> dict:
    """The environment that points gpu_check.sh at the stubs (and, with `clock`, at a simulated clock)."""
    me = Path(__file__).resolve()
    san = root / "bin" / "compute-sanitizer"
    san.parent.mkdir(exist_ok=True)
    san.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{me}" --stub sanitizer "$@"\n')
    san.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("STYLESWAP_MATCH_KERNEL", "GPU_CHECK_CLOCK")}
    env.update(PYTHON=f"{sys.executable} {me} --stub python", SANITIZER=str(san), OUT=str(root / "out"),
               RUN_DIR=str(root / "run"), STUB_LOG=str(root / "stub.jsonl"), CARRY=str(root / ".carry"))
    if clock is not None:
        (root / "clock").write_text(str(clock))
        env["GPU_CHECK_CLOCK"] = str(root / "clock")
    return env


def dry_run(root: Path, env_overrides: dict, estimates: dict | None = None) -> dict:
    """Runs the script with the simulated clock; returns its summary lines, the simulated seconds and the
    stub calls in order."""
    script = scratch_copy(root)
    carry = root / ".carry"  # what prepare_carry.sh provides, as empty stand-ins: the e2e/train/quality steps run
    for d in ("data/content", "data/style", "ust_baseline", "runs"):
        (carry / d).mkdir(parents=True, exist_ok=True)
    (carry / "vgg19_conv1_1-conv3_1_torchvision.pth").touch()
    env = stub_env(root)
    env.setdefault("PRESET", "tiled")
    env.update(env_overrides)
    if estimates:
        env["DRY_ESTIMATES"] = json.dumps(estimates)
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    summary = (root / "run" / "summary.txt").read_text().splitlines()
    calls = [json.loads(line) for line in (root / "stub.jsonl").read_text().splitlines()]
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr, "summary": summary,
            "seconds": int((root / "clock").read_text()) - 1_000_000, "calls": calls}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--stub"]:  # before argparse: the stubbed command's own options follow
        return stub(argv[1], argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--env", action="append", default=[], help="VAR=VALUE for gpu_check.sh (default PRESET=tiled)")
    p.add_argument("--set", action="append", default=[], help="KIND=SECONDS: another estimate (see ESTIMATES)")
    args = p.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.env)
    estimates = {k: int(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    for k in estimates:
        if k not in ESTIMATES:
            raise SystemExit(f"unknown estimate {k!r}: one of {', '.join(ESTIMATES)}")
    with tempfile.TemporaryDirectory(prefix="gpu_check_dry_") as tmp:
        res = dry_run(Path(tmp), env, estimates)
    print("\n".join(res["summary"]))
    budget = int(env.get("BUDGET_S", 440 if env.get("PRESET", "tiled") == "tiled" else 560))
    print(f"\nsimulated: {res['seconds']} s of a {budget} s budget; {len(res['calls'])} commands; exit {res['rc']}")
    if res["rc"] != 0:
        print(res["stderr"][-2000:], file=sys.stderr)
    return 0 if res["rc"] == 0 and res["seconds"] <= budget else 1


if __name__ == "__main__":
    sys.exit(main())

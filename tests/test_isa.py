"""STYLESWAP_CPU_ISA (csrc/cpu/isa.h): which copy of the CPU hot loops runs (AVX-512, AVX2, baseline),
so that CI reruns the exactness tests on one machine with the kernels other processors run
(.ci/run, docs/testing.md). Each case is a process of its own: the variable is read once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from styleswap_ext import _C

REPO = Path(__file__).resolve().parents[1]
ISAS = ("avx512", "avx2", "baseline")

# In a process of its own: the ISA the extension reports, and the approximate search (whose hot loops
# the switch picks) on integer-valued features, exact in every copy's summation order.
PROBE = """
import json, torch, styleswap_ext as ss
from styleswap_ext import _C
g = torch.Generator().manual_seed(0)
content = torch.randint(0, 4, (1, 16, 14, 15), generator=g).float()
style = torch.randint(0, 4, (1, 16, 16, 13), generator=g).float()
idx = ss.match_patches(content, style, search="approximate", probes=3)
print(json.dumps({"isa": _C.cpu_isa(), "idx": idx.flatten().tolist()}))
"""


def _run(code, isa=None):
    env = {k: v for k, v in os.environ.items() if k != "STYLESWAP_CPU_ISA"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if isa is not None:
        env["STYLESWAP_CPU_ISA"] = isa
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def _cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return set(next(line for line in text.splitlines() if line.startswith("flags")).split(":")[1].split())


def _supported():
    flags = _cpu_flags()
    if flags is None or "sse2" not in flags:
        pytest.skip("needs an x86 Linux machine (/proc/cpuinfo)")
    return [isa for isa, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("baseline", "sse2")) if flag in flags]


@pytest.mark.exactness
def test_default_is_the_best_isa_of_this_cpu():
    proc = _run(PROBE)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["isa"] == _supported()[0]


@pytest.mark.exactness
def test_each_forced_isa_is_the_one_dispatched_and_gives_the_same_picks():
    results = {}
    for isa in _supported():
        proc = _run(PROBE, isa)
        assert proc.returncode == 0, (isa, proc.stderr)
        results[isa] = json.loads(proc.stdout)
        assert results[isa]["isa"] == isa
    assert len(results) >= 2  # at least AVX2 or AVX-512 next to the baseline on any x86-64 CI machine
    picks = [r["idx"] for r in results.values()]
    assert all(p == picks[0] for p in picks[1:])


@pytest.mark.parametrize("value, message", [
    ("sse9", "STYLESWAP_CPU_ISA must be one of avx512, avx2, baseline (got 'sse9')"),
    ("AVX2", "STYLESWAP_CPU_ISA must be one of avx512, avx2, baseline (got 'AVX2')"),
])
def test_an_unknown_value_is_a_value_error_naming_the_variable(value, message):
    proc = _run("import torch\nfrom styleswap_ext import _C\n_C.cpu_isa()", value)
    assert proc.returncode == 1 and f"ValueError: {message}" in proc.stderr, proc.stderr
    # the search itself refuses it the same way (torch's op error)
    proc = _run(PROBE, value)
    assert proc.returncode == 1 and "ValueError" in proc.stderr and message in proc.stderr, proc.stderr


def test_an_isa_this_cpu_lacks_is_refused():
    missing = [isa for isa in ISAS if isa not in _supported()]
    if not missing:
        pytest.skip("this CPU runs every ISA")
    proc = _run("import torch\nfrom styleswap_ext import _C\n_C.cpu_isa()", missing[0])
    assert proc.returncode == 1, proc.stderr
    assert f"ValueError: STYLESWAP_CPU_ISA={missing[0]}: this CPU does not support it (it runs " in proc.stderr


@pytest.mark.exactness
def test_the_forced_settings_of_this_run_are_in_force():
    """Under .ci/run's reruns: the settings asked for are the ones running (else the rerun proves nothing)."""
    if os.environ.get("STYLESWAP_CPU_ISA"):
        assert _C.cpu_isa() == os.environ["STYLESWAP_CPU_ISA"]
    aten = os.environ.get("ATEN_CPU_CAPABILITY")
    if aten:
        assert torch.backends.cpu.get_cpu_capability().lower() == aten.lower()

"""benchmarks/gpu_check.sh on the CPU (issue 37): the one prepared GPU call must notice every failure,
run every CUDA test file, and keep the sanitizer within its budget.

The script runs from a scratch copy (benchmarks/gpu_check_dry_run.py) with stubs for python and the
sanitizer: either with real pytest runs of stand-in test files (a suite that fails, crashes or hangs
under one match path) and the real clock, or with a simulated clock that the stubs advance by their
estimated GPU times (the budget).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check_dry_run as dry  # noqa: E402

# Stand-ins for the CUDA test files, named and selected as the real ones are: "experimental and KERNEL"
# picks a path's own tests, PATH_TESTS_K the suite rerun per path, "-k cuda" the CUDA tests of
# test_regions.py / test_approx.py. STANDIN_PLAN="cublas=fail,tma=crash,wgmma=hang" says what the
# path-dependent test does under STYLESWAP_MATCH_KERNEL.
STANDIN_CUDA = '''
import os, signal, time
import pytest

def test_match():
    plan = dict(kv.split("=") for kv in os.environ.get("STANDIN_PLAN", "").split(",") if kv)
    path = os.environ.get("STYLESWAP_MATCH_KERNEL", "default")
    what = plan.get(path)
    if what == "fail":
        assert False, "wrong indices under " + path
    if what == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if what == "hang":
        time.sleep(600)

def test_gather_equals_cpu():
    pass

@pytest.mark.parametrize("path", ["cublas", "cublas_fused", "tma", "wgmma"])
def test_experimental_path(path):
    pass
'''
STANDIN_CPU_AND_CUDA = '''
def test_cuda_on_the_gpu():
    pass

def test_on_the_cpu():
    assert False, "a CPU test: the preset selects this file's CUDA tests only"
'''


def _run_standins(tmp_path: Path, **env) -> tuple:
    script = dry.scratch_copy(tmp_path, {"test_cuda": STANDIN_CUDA, "test_regions": STANDIN_CPU_AND_CUDA,
                                         "test_approx": STANDIN_CPU_AND_CUDA})
    full = dry.stub_env(tmp_path, clock=None)
    # (the stand-ins need no pytest plugin; hypothesis's alone takes seconds to import on a busy machine)
    full.update(PRESET="tiled", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", **env)
    proc = subprocess.run(["bash", str(script)], env=full, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (tmp_path / "run" / "summary.txt").read_text()
    calls = [json.loads(line) for line in (tmp_path / "stub.jsonl").read_text().splitlines()]
    return summary, calls


def test_a_path_whose_suite_fails_crashes_or_hangs_is_named_and_kept_out(tmp_path):
    """PRESET=tiled with a stand-in suite that fails under the default path and under cublas, crashes
    under tma, hangs under wgmma, and a path no test is named after: the summary names each (FAILED
    with pytest's FAILED line, CRASHED with the signal and the test, TIMEOUT with the test, NO TESTS
    SELECTED: exit 5 is admitted only where nothing is expected), and only cublas_fused is benched,
    sanitised and swept. (Before issue 37 the gate grepped for "^FAILED", which `-rs` never printed:
    every path counted as passed.)"""
    summary, calls = _run_standins(tmp_path, STANDIN_PLAN="default=fail,cublas=fail,tma=crash,wgmma=hang",
                                   EXP_KERNELS="cublas_fused cublas tma wgmma nosuchpath", PATH_CAP_S="10")
    lines = summary.splitlines()

    def line(start):
        hits = [ln for ln in lines if start in ln]
        assert len(hits) == 1, (start, summary)
        return hits[0]

    # the tests step: each file in its own process; test_regions / test_approx: their CUDA tests only
    assert "tests test_cuda: FAILED: 1 failed, 1 passed, 4 deselected" in line("tests test_cuda:")
    assert "FAILED tests/test_cuda.py::test_match - AssertionError: wrong indices under default" in summary
    for f in ("test_regions", "test_approx"):
        assert f"tests {f}:cuda: passed: 1 passed, 1 deselected" in line(f"tests {f}:cuda:")
    # the kernels step: the path-dependent rerun of each path
    assert ": passed: 1 passed, 5 deselected" in line("(STYLESWAP_MATCH_KERNEL=cublas_fused)")
    assert ": FAILED: 1 failed, 5 deselected" in line("(STYLESWAP_MATCH_KERNEL=cublas)")
    assert "FAILED tests/test_cuda.py::test_match - AssertionError: wrong indices under cublas" in summary
    assert ": CRASHED (SIGSEGV, exit 139) in tests/test_cuda.py line" in line("(STYLESWAP_MATCH_KERNEL=tma)")
    assert line("(STYLESWAP_MATCH_KERNEL=tma)").endswith("in test_match")
    assert ": TIMEOUT after 10 s in tests/test_cuda.py::test_match" in line("(STYLESWAP_MATCH_KERNEL=wgmma)")
    assert "kernel nosuchpath, own tests: NO TESTS SELECTED (exit 5)" in summary
    assert line("kernels passed:").endswith("kernels passed: cublas_fused")
    assert line("kernels failed:").endswith(
        "kernels failed: cublas (test_cuda: FAILED) tma (test_cuda: CRASHED (SIGSEGV, exit 139)) "
        "wgmma (test_cuda: TIMEOUT after 10 s) nosuchpath (own tests: NO TESTS SELECTED)")

    bench = [c["argv"] for c in calls if c["kind"] == "bench"]
    assert len(bench) == 1 and bench[0][bench[0].index("--kernels") + 1] == "cublas_fused"
    assert "--tile-sweep" not in bench[0]  # the sweep is its own step, after the sanitizer
    kinds = [c["kind"] for c in calls]
    assert [(c["kind"], c["kernel"]) for c in calls if c["role"] == "sanitizer"] == [
        ("memcheck", "cublas_fused"), ("racecheck", "cublas_fused")]
    assert kinds.index("bench") < kinds.index("memcheck") < kinds.index("racecheck") < kinds.index("sweep")
    sweep = next(c["argv"] for c in calls if c["kind"] == "sweep")
    assert sweep[sweep.index("--kernels") + 1] == "cublas_fused"


def _stamps(summary):
    """[(seconds, text)] of the "[gpu_check +Ns] text" lines."""
    out = []
    for ln in summary:
        if ln.startswith("[gpu_check +"):
            t, text = ln[len("[gpu_check +"):].split("s] ", 1)
            out.append((int(t), text))
    return out


def test_the_tiled_preset_fits_its_budget_with_the_sanitizer(tmp_path):
    """A dry run of PRESET=tiled at the estimated GPU times (gpu_check_dry_run.ESTIMATES): every step
    runs, the fused path's memcheck and racecheck included, in the order build, tests, kernels, bench,
    sanitize, sweep, and the run ends within BUDGET_S = 440 s."""
    res = dry.dry_run(tmp_path, {})
    assert res["rc"] == 0, res["stderr"][-2000:]
    stamps = _stamps(res["summary"])
    texts = [t for _, t in stamps]
    steps = [t for t in texts if t in ("build (sm_90a)", "tests", "kernels", "bench", "sanitize", "sweep")]
    assert steps == ["build (sm_90a)", "tests", "kernels", "bench", "sanitize", "sweep"]
    assert any(t.startswith("sanitize memcheck cublas_fused: clean") for t in texts)
    assert any(t.startswith("sanitize racecheck cublas_fused: clean") for t in texts)
    assert "kernels passed: cublas_fused cublas tma" in texts
    end = stamps[-1][0]
    assert texts[-1].startswith("done") and end <= 440 and res["seconds"] <= 440, stamps[-1]


@pytest.mark.parametrize("slow,sanitized", [("bench", "cublas_fused"), ("tests:test_cuda", "cublas_fused"),
                                            ("path:test_cuda", "default")])
def test_a_step_that_runs_into_its_cap_leaves_the_sanitizer_its_time(tmp_path, slow, sanitized):
    """The bench, the default suite or every per-path suite takes its whole cap: memcheck and racecheck
    still run and the run still ends within its budget. (With every per-path suite timed out no path
    passed: the sanitizer runs under the default kernel, which still calls the fused reduce through the
    tiled driver's private op, benchmarks/sanitize_small.py.)"""
    res = dry.dry_run(tmp_path, {}, {slow: 10_000})
    texts = [t for _, t in _stamps(res["summary"])]
    assert any(t.startswith(f"sanitize memcheck {sanitized}: clean") for t in texts), texts
    assert any(t.startswith(f"sanitize racecheck {sanitized}: clean") for t in texts), texts
    assert any("TIMEOUT after" in t or "CUT SHORT at" in t for t in texts), texts
    assert res["seconds"] <= 440


def test_the_presets_cuda_selection_covers_every_cuda_test(tmp_path):
    """The preset runs test_regions.py and test_approx.py with -k cuda (their CPU tests run in CI): every
    test there that skips without a GPU (a skipif whose reason names CUDA) must be one -k cuda selects,
    i.e. carry "cuda" in its name, or the GPU run would miss it."""
    plugin = tmp_path / "cuda_marks.py"
    plugin.write_text(textwrap.dedent('''
        def pytest_collection_finish(session):  # after -k deselection
            for item in session.items:
                needs = any("CUDA" in str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif"))
                print("ITEM", needs, item.nodeid)
    '''))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]))
    files = ["tests/test_regions.py", "tests/test_approx.py"]

    def collect(*k):
        proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-s", "-p", "cuda_marks",
                               "-p", "no:cacheprovider", *files, *k], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return [ln.split(" ", 2)[1:] for ln in proc.stdout.splitlines() if ln.startswith("ITEM ")]

    needs_cuda = {nodeid for needs, nodeid in collect() if needs == "True"}
    selected = {nodeid for _, nodeid in collect("-k", "cuda")}
    assert {n.split("::")[0] for n in needs_cuda} == set(files)  # both files have CUDA tests
    assert needs_cuda <= selected, sorted(needs_cuda - selected)

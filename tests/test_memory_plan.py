"""The memory plan: a stylisation that cannot fit is refused before it allocates, with the figures
and the options that would fit; plans that fit run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from styleswap_ext.pipeline import memory_plan
from styleswap_ext import pipeline
from styleswap_ext.pipeline.memory_plan import MemoryPlanError, estimate

ROOT = Path(__file__).resolve().parents[1]
GiB = 2**30


def test_cli_refuses_an_impossible_content_size_at_once(tmp_path, image_files, vgg_weights):
    """The issue's case: --content-size 100000 used to fill 21 GB in two minutes and be killed (137)."""
    content, style = image_files
    out = tmp_path / "out.png"
    env = dict(os.environ, STYLESWAP_VGG19_WEIGHTS=str(vgg_weights), PYTHONPATH=str(ROOT))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "styleswap_ext", "stylize", str(content), str(style),
                           "--content-size", "100000", "-o", str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    took = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("styleswap: error: "), proc.stderr
    assert "GiB of memory on cpu" in lines[0] and "available" in lines[0] and "--content-size" in lines[0]
    assert took < 60, took  # checked before the models load: ~4 s on a loaded 2-core machine
    assert not out.exists()


def _plan(c, s=(512, 512), **kw):
    return estimate((c, c), [(s, s)], **kw)


def test_estimate_grows_with_the_sizes_and_tiles_bound_the_passes():
    small, big = _plan((512, 512)), _plan((2048, 2048))
    # 16x the pixels; a CPU pass also holds a fixed CPU_PASS_BYTES (NNPACK's workspace, kept blocks)
    assert big.total - memory_plan.CPU_PASS_BYTES > 10 * (small.total - memory_plan.CPU_PASS_BYTES)
    assert _plan((512, 512), (1024, 1024)).total > small.total
    # the content's encoder/decoder pass is bounded by the tile, not by the image
    untiled, tiled = _plan((4096, 4096), tile_size=0), _plan((4096, 4096), tile_size=1024)
    assert tiled.passes["decoding"] < untiled.passes["decoding"] / 10
    assert tiled.held == untiled.held
    # the optimisation is not tiled and costs more than a decoder pass
    assert _plan((1024, 1024), method="optimize").total > _plan((1024, 1024)).total


def test_estimate_counts_the_patch_bank():
    """n_s style patches of 256·k² floats: a 1024 px square style at k = 3 has 254² of them. On the CPU at
    stride 1 the exact match keeps no patch matrix: the inverse norms, the style's pixels channel-last and
    a few tiles per core."""
    plan = estimate(None, [((1024, 1024), (1024, 1024))], device_type="cuda")
    assert plan.held["style 1 patch bank"] == 254 * 254 * (256 * 9 * 4 + 4)
    assert estimate(None, [((1024, 1024), (1024, 1024))], stride=2).held["style 1 patch bank"] == 127 * 127 * (256 * 9 * 4 + 4)
    cpu = estimate(None, [((1024, 1024), (1024, 1024))])
    assert cpu.held["style 1 patch bank"] == (254 * 254 * 4 + 256 * 256 * 256 * 4
                                              + memory_plan.MAPS_TILE_BYTES_PER_THREAD * (os.cpu_count() or 1))
    # auto counts the larger of the exact bank and the approximate index
    auto_cpu = estimate(None, [((1024, 1024), (1024, 1024))], search="auto")
    assert auto_cpu.held == {**estimate(None, [((1024, 1024), (1024, 1024))], search="approximate").held}
    auto_gpu = estimate(None, [((1024, 1024), (1024, 1024))], search="auto", device_type="cuda")
    assert auto_gpu.held == plan.held


def test_estimate_counts_the_approximate_search_index_instead():
    """search="approximate" keeps no full bank: the 64-channel bank twice (built, then sorted), order and
    inverse norms, and the style's pixels once more for the exact rerank: about 60 % of the bank."""
    exact = estimate(None, [((1024, 1024), (1024, 1024))], device_type="cuda")
    approx = estimate(None, [((1024, 1024), (1024, 1024))], search="approximate", device_type="cuda")
    assert "style 1 patch bank" not in approx.held
    n_s = 254 * 254
    assert approx.held["style 1 search index"] == n_s * (2 * 64 * 9 * 4 + 3 * 4 + 8) + 256 * 256 * 256 * 4
    assert approx.held["style 1 search index"] < 0.65 * exact.held["style 1 patch bank"]
    assert approx.total < exact.total


@pytest.fixture
def two_gib(monkeypatch):
    # (a CPU encoder/decoder pass needs ~0.6-1.7 GiB at 512-1024 px: 1 GiB leaves no content size to suggest)
    monkeypatch.setattr(memory_plan, "available_bytes", lambda device: 2 * GiB)


def test_refusal_names_both_figures_and_options_that_fit(two_gib):
    with pytest.raises(MemoryPlanError) as info:
        memory_plan.check("cpu", (3000, 4000), None, [(800, 600)], None, tile_size=1024)
    msg = str(info.value)
    assert "2.0 GiB is available" in msg and "would need about" in msg
    size = int(msg.split("--content-size ")[1].split(",")[0].split()[0])
    assert 16 < size < 4000
    # the suggested size fits, with the 20 % kept spare
    assert memory_plan.check("cpu", (3000, 4000), size, [(800, 600)], None, tile_size=1024).total <= 0.8 * 2 * GiB


def test_refusal_suggests_the_style_size_when_the_style_is_the_problem(two_gib):
    with pytest.raises(MemoryPlanError, match=r"--style-size \d+"):
        memory_plan.check("cpu", (300, 400), None, [(6000, 6000)], None, tile_size=1024)


def test_plans_that_fit_are_not_refused(two_gib):
    assert memory_plan.check("cpu", (384, 512), None, [(512, 512)], None, tile_size=1024).total < GiB


def test_cpu_passes_count_the_conv_workspace_and_kept_memory():
    """A CPU encoder/decoder pass holds NNPACK's workspace and the freed blocks glibc keeps
    (measured 573-658 MB for a 512 px pass, cpu_layers.py); a GPU pass neither."""
    args = (((512, 512), (512, 512)), [((512, 512), (512, 512))])
    cpu = memory_plan.estimate(*args, device_type="cpu")
    cuda = memory_plan.estimate(*args, device_type="cuda")
    for name in ("encoding the content", "encoding style 1", "decoding"):
        assert cpu.passes[name] - cuda.passes[name] == memory_plan.CPU_PASS_BYTES
    assert 658e6 < cpu.passes["decoding"] < 1.5 * 658e6 and 573e6 < cpu.passes["encoding the content"]
    assert memory_plan.check("cpu", (512, 512), None, [(512, 512)], None,
                             tile_size=1024).total == cpu.total


def test_unknown_availability_refuses_nothing(monkeypatch):
    monkeypatch.setattr(memory_plan, "available_bytes", lambda device: None)
    memory_plan.check("cpu", (10**5, 10**5), None, [(10**5, 10**5)], None, tile_size=0)


def test_the_check_can_be_switched_off(two_gib, monkeypatch):
    monkeypatch.setenv("STYLESWAP_NO_MEMORY_CHECK", "1")
    memory_plan.check("cpu", (10**5, 10**5), None, [(512, 512)], None, tile_size=0)


def test_available_bytes_on_this_machine():
    avail = memory_plan.available_bytes("cpu")
    assert avail is not None and 0 < avail < 2**50


def test_stylize_refuses_before_resizing(two_gib, monkeypatch, content_pil, style_pil):
    """Python API: the check runs before the content is resized (which alone would take GiBs)."""
    def no_resize(*a, **k):
        raise AssertionError("resized before the memory check")

    from styleswap_ext.pipeline import image_io  # imported here: pipeline loads its submodules on first use

    monkeypatch.setattr(image_io, "resize_longest", no_resize)
    with pytest.raises(MemoryPlanError, match="--content-size"):
        pipeline.stylize(content_pil, style_pil, content_size=50000, device="cpu",
                         encoder=torch.nn.Identity(), decoder=torch.nn.Identity())
    with pytest.raises(MemoryPlanError, match="--style-size"):
        pipeline.StyleBank([style_pil], encoder=None, style_size=50000, device="cpu")


def test_image_hw_reads_headers_and_shapes(image_files, content_pil):
    content, _ = image_files
    assert memory_plan.image_hw(content) == (content_pil.height, content_pil.width)
    assert memory_plan.image_hw(content_pil) == (content_pil.height, content_pil.width)
    assert memory_plan.image_hw(torch.zeros(2, 3, 20, 30)) == (20, 30)
    assert memory_plan.image_hw(Path("/nonexistent.png")) is None

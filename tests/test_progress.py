"""Progress bars: the swap shows one when its work (content x style patch pairs) is large, even for a
small content against a large style; the command line shows bars only on a terminal, never with -q."""

from __future__ import annotations

import sys

import pytest
import torch

import styleswap_ext as ss
from styleswap_ext.apps import cli
from styleswap_ext.ops import patch_bank


def _count_match_calls(monkeypatch):
    calls = []
    op = torch.ops.styleswap.match_styles  # the CPU's exact match at stride 1

    def counting(*a, **k):
        calls.append(a[0].shape[-2])
        return op(*a, **k)

    monkeypatch.setattr(torch.ops.styleswap, "match_styles", counting)
    return calls


@pytest.mark.exactness
def test_a_small_content_against_a_large_style_is_matched_in_slabs(monkeypatch, capsys):
    g = torch.Generator().manual_seed(0)
    # multiples of 1/8: exact dot products, so slabs (other GEMM shapes) pick what one call picks
    style, content = (torch.randint(0, 9, shape, generator=g) / 8 for shape in ((1, 8, 40, 40), (1, 8, 30, 20)))
    bank = ss.PatchBank(style)
    n_pairs = 28 * 18 * bank.num_patches
    monkeypatch.setattr(patch_bank, "PROGRESS_MIN_SLAB", 1)
    monkeypatch.setattr(patch_bank, "PROGRESS_MIN_PAIRS", n_pairs - 1)  # few content patches, much work
    calls = _count_match_calls(monkeypatch)
    got = bank.swap(content, progress=True)
    assert len(calls) > 5 and "matching" in capsys.readouterr().err
    calls.clear()
    assert torch.equal(got, ss.style_swap(content, style))  # one call, identical result
    monkeypatch.setattr(patch_bank, "PROGRESS_MIN_PAIRS", n_pairs)  # at the threshold: one call
    bank.swap(content, progress=True)
    assert calls == [30]


@pytest.mark.parametrize("tty, quiet, bar", [(True, False, True), (False, False, False), (True, True, False)])
def test_cli_bars_only_on_a_terminal(tmp_path, image_files, vgg_weights, monkeypatch, capsys, tty, quiet, bar):
    content, style = image_files
    monkeypatch.setattr(patch_bank, "PROGRESS_MIN_PAIRS", 0)
    monkeypatch.setattr(patch_bank, "PROGRESS_MIN_SLAB", 1)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    argv = ["stylize", str(content), str(style), "-o", str(tmp_path / "out.png"), "--vgg-weights", str(vgg_weights),
            "--device", "cpu"] + (["-q"] if quiet else [])
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert ("matching" in err) == bar, err
    assert ("wrote" in err) == (not quiet)

"""search="auto" (styleswap_ext/pipeline/search_choice.py): exact where it is cheap on the device, else approximate;
the pipeline's default, the operators' not; one line says which (none with -q)."""

from __future__ import annotations

import inspect

import pytest
import torch
from PIL import Image

import styleswap_ext as ss
from styleswap_ext.apps import cli
from styleswap_ext import models, pipeline
from styleswap_ext.pipeline import search_choice
from styleswap_ext.pipeline.search_choice import EXACT_BUDGET_S, choose, exact_seconds

GEOM = (256, 3, 1)  # relu3_1 channels, 3 x 3 patches, stride 1
GEOM_S2 = (256, 3, 2)  # stride 2: the CPU multiplies whole patches (match_bank)


def _patches(side_px, stride=1):
    """Patches of a side_px x side_px image at relu3_1 (k = 3)."""
    return ((side_px // 4 - 3) // stride + 1) ** 2


def test_auto_is_exact_when_cheap_and_approximate_when_not():
    small = choose("auto", _patches(256), _patches(256), *GEOM, "cpu")
    assert small.search == "exact" and small.exact_seconds <= EXACT_BUDGET_S
    # the CPU at stride 1 multiplies pixels (match_styles): a 512 px photo against a 512 px painting is exact
    assert choose("auto", _patches(512), _patches(512), *GEOM, "cpu").search == "exact"
    big = choose("auto", _patches(1024), _patches(1024), *GEOM, "cpu")
    assert big.search == "approximate" and big.exact_seconds > 4 * EXACT_BUDGET_S
    assert big.line() == f"search: approximate (exact would take ~{big.exact_seconds:.2g} s here: 64,516 x 64,516 patches)"
    # a GPU does the same match 100-400x faster: 1024 px x 1024 px stays exact there, 4096 px x 1024 px does not
    assert choose("auto", _patches(1024), _patches(1024), *GEOM, "cuda", "fp32").search == "exact"
    assert choose("auto", _patches(4096), _patches(1024), *GEOM, "cuda", "tf32").search == "approximate"
    # the estimate is linear in each factor; patch products cost k^2 pixel products' work at another rate
    assert exact_seconds(2, 3, 5, 3, 1, "cpu") * 4 == pytest.approx(exact_seconds(4, 6, 5, 3, 1, "cpu"))
    assert exact_seconds(2, 3, 5, 3, 2, "cpu") == pytest.approx(2 * 3 * 5 * 9 / search_choice.EXACT_RATE[("cpu", "fp32")])
    assert exact_seconds(2, 3, 5, 3, 1, "cpu") == pytest.approx(2 * 3 * 5 / search_choice.CPU_MAPS_RATE)
    assert exact_seconds(2, 3, 5, 3, 1, "cuda", "tf32") == pytest.approx(2 * 3 * 5 * 9 / 4.6e13)
    # stride 2 on the CPU: the patch products, so the same 512 px pair is estimated at its own cost
    s2 = choose("auto", _patches(512, 2), _patches(512, 2), *GEOM_S2, "cpu")
    assert s2.exact_seconds == pytest.approx(_patches(512, 2) ** 2 * 2304 / search_choice.EXACT_RATE[("cpu", "fp32")])


def test_the_bundled_demo_stays_exact():
    with Image.open(cli.DEMO_CONTENT) as c, Image.open(cli.DEMO_STYLE) as s:
        n_c = (c.height // 4 - 2) * (c.width // 4 - 2)
        n_s = (s.height // 4 - 2) * (s.width // 4 - 2)
    assert (n_c, n_s) == (6580, 5452)  # 384 x 288 photo, 384 x 240 painting
    for device, precision in (("cpu", "fp32"), ("cpu", "bf16"), ("cuda", "fp32")):
        assert choose("auto", n_c, n_s, *GEOM, device, precision).search == "exact"


def test_explicit_searches():
    n = _patches(1024)
    assert choose("exact", n, n, *GEOM, "cpu").search == "exact"
    assert choose("approximate", 10, 10, *GEOM, "cpu").search == "approximate"
    assert choose("auto", n, n, *GEOM, "cpu").search == "approximate"
    with pytest.raises(ValueError, match="search must be one of 'auto', 'exact', 'approximate', got 'fast'"):
        choose("fast", 1, 1, *GEOM, "cpu")


def test_the_operators_keep_exact_and_the_pipeline_defaults_to_auto():
    for fn in (ss.style_swap, ss.match_patches, ss.PatchBank.__init__, ss.StyleSwap.__init__):
        assert inspect.signature(fn).parameters["search"].default == "exact", fn
    for fn in (pipeline.stylize, pipeline.StyleBank.__init__):
        assert inspect.signature(fn).parameters["search"].default == "auto", fn
    with pytest.raises(ValueError, match="search must be one of 'exact', 'approximate'"):
        ss.match_patches(torch.rand(1, 4, 5, 5), torch.rand(1, 4, 5, 5), search="auto")


def test_style_bank_chooses_per_content_and_reports_once(encoder, monkeypatch, content_pil, style_pil):
    from styleswap_ext.pipeline.image_io import pil_to_tensor

    bank = pipeline.StyleBank([pil_to_tensor(style_pil)], encoder)
    seen = []
    bank.on_search = seen.append
    with torch.no_grad():
        cf = encoder(pil_to_tensor(content_pil)[None])
    exact = bank.swap(cf)
    assert bank.last_search.search == "exact" and bank.patch_bank.search == "exact" and len(seen) == 1
    bank.swap(cf)  # same size, same choice: no second line, the same bank
    assert len(seen) == 1
    torch.testing.assert_close(exact, ss.style_swap(cf, bank.features[0]), rtol=0, atol=0)
    # a budget of 0 s: the approximate search, built now, with its own line
    monkeypatch.setattr(search_choice, "EXACT_BUDGET_S", 0.0)
    approx = bank.swap(cf)
    assert bank.last_search.search == "approximate" and bank.patch_bank.index is not None and len(seen) == 2
    torch.testing.assert_close(approx, ss.style_swap(cf, bank.features[0], search="approximate"), rtol=0, atol=0)
    assert seen[1].line() == "search: approximate (exact would take under 0.1 s here: 70 x 100 patches)"


def test_controls_go_with_the_approximate_search(encoder, monkeypatch, content_pil, style_pil):
    """auto chooses on the size alone: regions and a temporal bonus run in the approximate search too,
    and a frame's choice becomes the next frame's 'previous' whatever search made it."""
    from styleswap_ext.pipeline.image_io import pil_to_tensor

    monkeypatch.setattr(search_choice, "EXACT_BUDGET_S", 0.0)  # everything is approximate
    s = pil_to_tensor(style_pil)
    bank = pipeline.StyleBank([s], encoder, style_masks=[torch.zeros(s.shape[-2:], dtype=torch.long)])
    with torch.no_grad():
        cf = encoder(pil_to_tensor(content_pil)[None])
    labels = torch.zeros(cf.shape[-2:], dtype=torch.long)
    bank.swap(cf, content_labels=labels)
    assert bank.last_search.search == "approximate"
    state = pipeline.TemporalState(0.01)
    bank.swap_temporal(cf, state, content_labels=labels)
    assert bank.last_search.search == "approximate" and state.previous is not None
    first = state.previous.clone()
    bank.swap_temporal(cf, state, content_labels=labels)  # the same frame again: its choice is kept
    assert torch.equal(state.previous, first)


def test_stylize_marks_its_result_and_says_which(encoder, monkeypatch, content_pil, style_pil, capsys):
    kw = dict(method="decoder", encoder=encoder, decoder=models.Decoder(instance_norm=False).eval())
    out = pipeline.stylize(content_pil, style_pil, progress=True, **kw)
    assert out.info["search"] == "exact"
    assert capsys.readouterr().err.count("search: exact (") == 1
    monkeypatch.setattr(search_choice, "EXACT_BUDGET_S", 0.0)
    out = pipeline.stylize(content_pil, style_pil, progress=False, **kw)
    assert out.info["search"] == "approximate" and "search:" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="search must be one of 'auto', 'exact', 'approximate'"):
        pipeline.stylize(content_pil, style_pil, search="fast", **kw)


def test_cli_default_is_auto_with_one_line(capsys, image_files, vgg_weights, tmp_path, monkeypatch):
    monkeypatch.setattr(models.loading, "packaged_decoder_path", lambda: None)
    content, style = image_files
    base = ["stylize", str(content), str(style), "--vgg-weights", str(vgg_weights), "--method", "optimize",
            "--iters", "1"]
    assert cli.main(base + ["-o", str(tmp_path / "a.png")]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("search:")] == [
        "search: exact (under 0.1 s here: 70 x 100 patches)"], err  # 48 x 36 px photo, 48 x 48 px style
    assert cli.main(base + ["-o", str(tmp_path / "b.png"), "-q"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(search_choice, "EXACT_BUDGET_S", 0.0)
    assert cli.main(base + ["-o", str(tmp_path / "c.png")]) == 0
    assert "search: approximate (exact would take under 0.1 s here: 70 x 100 patches)" in capsys.readouterr().err
    assert cli.main(base + ["-o", str(tmp_path / "d.png"), "--search", "exact"]) == 0
    assert "search:" not in capsys.readouterr().err  # asked for: nothing to say
    assert cli.main(base + ["-o", str(tmp_path / "e.png"), "--search", "fast"]) == 2
    assert "argument --search: invalid choice: 'fast'" in capsys.readouterr().err


def test_cli_video_auto_chooses_once_with_the_temporal_weight_on(capsys, image_files, vgg_weights, tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.setattr(models.loading, "packaged_decoder_path", lambda: None)
    monkeypatch.setattr(search_choice, "EXACT_BUDGET_S", 0.0)  # every size would go approximate
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.full((36, 44, 3), 40 * i + 30, np.uint8)).save(frames / f"f{i}.png")
    base = ["video", str(frames), str(image_files[1]), "--vgg-weights", str(vgg_weights), "--method", "optimize",
            "--iters", "1"]
    # the default temporal weight (0.01) is on, and the approximate search takes it: one line for all frames
    for out, extra in (("a", []), ("b", ["--temporal-weight", "0"])):
        assert cli.main(base + ["-o", str(tmp_path / out)] + extra) == 0
        lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("search:")]
        assert lines == ["search: approximate (exact would take under 0.1 s here: 63 x 100 patches)"], lines


def test_auto_builds_only_the_bank_it_chose(encoder, monkeypatch, content_pil, style_pil):
    """A run that goes approximate never builds the exact bank too (the stage line once did, to name
    the search: an n_s x 2304 matrix for nothing)."""
    from styleswap_ext.pipeline import stylization  # where StyleBank finds PatchBank

    built = []
    real = stylization.PatchBank

    def recording(*args, **kwargs):
        built.append(kwargs.get("search"))
        return real(*args, **kwargs)

    monkeypatch.setattr(stylization, "PatchBank", recording)
    monkeypatch.setattr(search_choice, "EXACT_BUDGET_S", 0.0)
    out = pipeline.stylize(content_pil, style_pil, method="decoder", encoder=encoder,
                           decoder=models.Decoder(instance_norm=False).eval(), progress=False)
    assert out.info["search"] == "approximate" and built == ["approximate"], built

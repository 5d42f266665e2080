"""styleswap_ext.pipeline.settings: one set of defaults, checks and settings -> command line, shared by the CLI
and the studio (no torch needed)."""

from __future__ import annotations

import dataclasses
import inspect
import shlex

import pytest

from styleswap_ext.apps import cli
from styleswap_ext.pipeline.settings import FLAGS, StylizeSettings, cli_name


def _stylize_parser():
    parser = cli.build_parser(train_options=False)
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["stylize"]


def _parse(words):
    return cli.build_parser(train_options=False).parse_args(words)


def test_defaults_are_the_command_lines_and_stylize_s():
    """Every field's default is the parser's default and pipeline.stylize's (the studio's API inherits them)."""
    from styleswap_ext import pipeline

    p = _stylize_parser()
    defaults = StylizeSettings()
    sig = inspect.signature(pipeline.stylize).parameters
    for f in FLAGS:
        assert p.get_default(f) == getattr(defaults, f), f
        if f in sig and f not in ("device", "tile_size"):  # stylize: device None = auto, tile_size None = by device
            assert sig[f].default == getattr(defaults, f), f
    assert sig["device"].default in (None, "auto")


def test_choices_are_the_command_lines():
    from styleswap_ext.pipeline import settings

    p = _stylize_parser()
    choices = {a.dest: tuple(a.choices) for a in p._actions if a.choices}
    assert choices["method"] == settings.METHODS
    assert choices["search"] == settings.SEARCHES
    assert choices["precision"] == settings.PRECISIONS
    assert choices["init"] == settings.INITS
    assert choices["device"] == settings.DEVICES


ROUND_TRIPS = [
    StylizeSettings(),
    StylizeSettings(method="optimize", init="decoder", iters=7, lr=0.1, tv_weight=0.0, alpha=0.35,
                    preserve_color=True, content_size=300, style_size=200, patch_size=5, stride=2),
    StylizeSettings(style_weights=(1.0, 0.5), search="approximate", precision="bf16", tile_size=0, device="cpu"),
    StylizeSettings(alpha=0.1 + 0.2, tv_weight=1e-7, lr=1 / 3, tile_size=512, vgg_weights="w it's.pth"),
]


@pytest.mark.parametrize("s", ROUND_TRIPS)
def test_command_line_parses_back_to_the_same_settings(s):
    n = len(s.style_weights) if s.style_weights else 1
    styles = [f"style {i}.jpg" for i in range(n)]
    line = s.command("my photo.jpg", styles, "out.png")
    words = shlex.split(line)
    assert words[:2] == ["styleswap", "stylize"]
    args = _parse(words[1:])
    assert args.content == "my photo.jpg" and args.styles == styles and args.output == "out.png"
    assert StylizeSettings.from_args(args) == s
    assert StylizeSettings.from_args(args).check(n, name=cli_name) == s.check(n)


def test_command_line_names_only_what_differs_and_the_masks():
    assert StylizeSettings().command("c.png", ["s.png"], "o.png") == "styleswap stylize c.png s.png -o o.png"
    line = StylizeSettings(alpha=0.5).command("c.png", ["a.png", "b.png"], "o.png", content_mask="m.png",
                                              style_masks=["ma.png", "mb.png"])
    assert line.endswith("--alpha 0.5 --content-mask m.png --style-mask ma.png mb.png")
    args = _parse(shlex.split(line)[1:])
    assert args.content_mask == "m.png" and args.style_mask == ["ma.png", "mb.png"]


@pytest.mark.parametrize("change, message", [
    (dict(stride=4), "stride (4) must not exceed patch_size (3)"),
    (dict(alpha=1.5), "alpha must be a number in [0, 1], got 1.5"),
    (dict(alpha="1"), "alpha must be a number in [0, 1], got '1'"),
    (dict(patch_size=2.5), "patch_size must be an integer >= 1, got 2.5"),
    (dict(content_size=8), "content_size must be an integer >= 16, got 8"),
    (dict(method="fast"), "method must be one of decoder, optimize, got 'fast'"),
    (dict(search="fuzzy"), "search must be one of auto, exact, approximate, got 'fuzzy'"),
    (dict(tile_size=50), "tile_size must be 0 (never tile) or an integer >= 96"),
    (dict(iters=0), "iters must be an integer >= 1, got 0"),
    (dict(lr=0.0), "lr must be a number > 0, got 0.0"),
    (dict(preserve_color="yes"), "preserve_color must be true or false, got 'yes'"),
    (dict(style_weights=(1.0,)), "style_weights got 1 value for 2 styles"),
    (dict(style_weights=(0, 0)), "style_weights must not all be 0"),
    (dict(style_weights=(1.0, 1e-46)), "style_weights[1] (1e-46) is too small next to the largest weight"),
])
def test_check_refuses_with_one_line_naming_the_setting(change, message):
    with pytest.raises(ValueError) as e:
        dataclasses.replace(StylizeSettings(), **change).check(2)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_check_names_flags_for_the_command_line_and_normalises():
    with pytest.raises(ValueError, match=r"^--stride \(4\) must not exceed --patch-size \(3\)$"):
        StylizeSettings(stride=4).check(1, name=cli_name)
    assert StylizeSettings(search="approximate").check(1, name=cli_name).search == "approximate"  # masks too
    s = StylizeSettings(patch_size=5.0, stride=2.0, alpha=1, style_weights=[1, 2]).check(2)
    assert (s.patch_size, s.stride, s.alpha, s.style_weights) == (5, 2, 1.0, (1.0, 2.0))
    assert type(s.patch_size) is int and type(s.alpha) is float


def test_pipeline_kwargs_are_the_command_lines():
    """bank_kwargs/stylize_kwargs give StyleBank and stylize what cli._style_bank/_stylize_one give them."""
    from unittest import mock

    words = ["c.png", "a.png", "b.png", "-o", "o.png", "--style-weights", "1", "2", "--alpha", "0.5",
             "--method", "optimize", "--iters", "3", "--patch-size", "5", "--stride", "2", "--style-size", "64"]
    args = _parse(["stylize", *words])
    args.progress = False
    s = StylizeSettings.from_args(args)
    with mock.patch("styleswap_ext.pipeline.StyleBank") as bank, mock.patch("styleswap_ext.pipeline.stylize") as sty:
        cli.runners._style_bank(args, ["A", "B"], "enc", "cpu")
        cli.runners._stylize_one(args, "C", "bank", "enc", "dec")
    got_bank = bank.call_args.kwargs
    assert {k: got_bank[k] for k in s.bank_kwargs()} == dict(s.bank_kwargs())
    got = sty.call_args.kwargs
    assert {k: got[k] for k in s.stylize_kwargs()} == dict(s.stylize_kwargs())

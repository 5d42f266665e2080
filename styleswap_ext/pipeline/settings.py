"""The settings of one stylisation, checked once, for every front end (no torch: the CLI checks them
before anything heavy is imported).

:class:`StylizeSettings` holds what ``styleswap stylize`` takes besides its files; its defaults are
the command line's (``tests/test_settings.py`` ties them to the parser and to
:func:`styleswap_ext.pipeline.stylize`). :meth:`StylizeSettings.check` refuses a bad value or a bad
combination with one line naming the setting as the front end calls it (``--stride`` on the command
line, ``stride`` in Python and in ``styleswap studio``), and :meth:`StylizeSettings.command` gives the
``styleswap stylize`` command line that reproduces a run (the studio shows it under every result).
The CLI (``cli.runners._check_common``) and the studio both check through here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import shlex
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

from .._util.choices import INITS, METHODS, MIN_TILE_SIZE, PRECISIONS, SEARCHES, TV_WEIGHT
from .._util.text import plural

__all__ = ["StylizeSettings", "DEVICES", "MIN_IMAGE_SIZE", "FLAGS", "cli_name", "python_name"]

DEVICES = ("auto", "cpu", "cuda")
MIN_IMAGE_SIZE = 16  # --content-size / --style-size minimum (px, longest side)

# the command line's option for each field (the order is the order of a generated command line)
FLAGS = {
    "method": "--method", "init": "--init", "iters": "--iters", "lr": "--lr", "tv_weight": "--tv-weight",
    "patch_size": "--patch-size", "stride": "--stride", "style_weights": "--style-weights", "alpha": "--alpha",
    "preserve_color": "--preserve-color", "search": "--search", "content_size": "--content-size",
    "style_size": "--style-size", "device": "--device", "precision": "--precision", "tile_size": "--tile-size",
    "vgg_weights": "--vgg-weights", "decoder_weights": "--decoder-weights",
}

Namer = Callable[[str], str]


def cli_name(field: str) -> str:
    return FLAGS[field]


def python_name(field: str) -> str:
    return field


class _Bad(ValueError):
    """A field's value is wrong: the message after the field's name."""


def _int(value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)  # 3.0 from a JSON client or a slider: a whole number is fine
        else:
            raise _Bad(f"must be an integer >= {lo}, got {value!r}")
    if value < lo:
        raise _Bad(f"must be an integer >= {lo}, got {value!r}")
    return int(value)


def _size(value) -> Optional[int]:
    return None if value is None else _int(value, MIN_IMAGE_SIZE)


def _real(value, lo: float, hi: Optional[float] = None, lo_open: bool = False) -> float:
    desc = f"in [{lo:g}, {hi:g}]" if hi is not None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _Bad(f"must be a number {desc}, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)):
        raise _Bad(f"must be a number {desc}, got {value!r}")
    return v


def _choice(choices: Sequence[str]):
    def check(value):
        if value not in choices:
            raise _Bad(f"must be one of {', '.join(choices)}, got {value!r}")
        return value
    return check


def _tile(value) -> Optional[int]:
    if value is None:
        return None
    v = _int(value, 0)
    if v != 0 and v < MIN_TILE_SIZE:
        raise _Bad(f"must be 0 (never tile) or an integer >= {MIN_TILE_SIZE} (8 times the encoder's "
                   f"{MIN_TILE_SIZE // 8} px halo: smaller tiles are mostly halo), got {value!r}")
    return v


def _weights(value) -> Optional[Tuple[float, ...]]:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise _Bad(f"must be a list of numbers >= 0, got {value!r}")
    return tuple(_real(w, 0.0) for w in value)


def _bool(value) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, got {value!r}")
    return value


def _path(value) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _Bad(f"must be a file path, got {value!r}")
    return value


_FIELD_CHECKS = {
    "method": _choice(METHODS), "init": _choice(INITS), "iters": lambda v: _int(v, 1),
    "lr": lambda v: _real(v, 0.0, lo_open=True), "tv_weight": lambda v: _real(v, 0.0),
    "patch_size": lambda v: _int(v, 1), "stride": lambda v: _int(v, 1), "style_weights": _weights,
    "alpha": lambda v: _real(v, 0.0, 1.0), "preserve_color": _bool, "search": _choice(SEARCHES),
    "content_size": _size, "style_size": _size, "device": _choice(DEVICES), "precision": _choice(PRECISIONS),
    "tile_size": _tile, "vgg_weights": _path, "decoder_weights": _path,
}


@dataclasses.dataclass(frozen=True)
class StylizeSettings:
    """What ``styleswap stylize`` takes besides its files, with the command line's defaults.

    Unchecked as built: :meth:`check` returns the checked, normalised copy (``3.0`` -> ``3``, weights
    as a tuple of floats) or raises ValueError naming the setting.
    """

    method: str = "decoder"
    init: str = "content"
    iters: int = 100
    lr: float = 0.05
    tv_weight: float = TV_WEIGHT
    patch_size: int = 3
    stride: int = 1
    style_weights: Optional[Tuple[float, ...]] = None
    alpha: float = 1.0
    preserve_color: bool = False
    search: str = "auto"
    content_size: Optional[int] = None
    style_size: Optional[int] = None
    device: str = "auto"
    precision: str = "fp32"
    tile_size: Optional[int] = None
    vgg_weights: Optional[str] = None
    decoder_weights: Optional[str] = None

    # --- building -----------------------------------------------------------------------------------

    @classmethod
    def from_args(cls, args) -> "StylizeSettings":
        """From the command line's parsed arguments (``stylize``, ``video``, ``demo``: an option a
        command does not have keeps its default)."""
        defaults = cls()
        values = {f: getattr(args, f, getattr(defaults, f)) for f in FLAGS}
        if values["method"] is None:  # demo: decided later (decoder when one is installed)
            values["method"] = defaults.method
        if values["style_weights"] is not None:
            values["style_weights"] = tuple(values["style_weights"])
        return cls(**values)

    # --- checking -----------------------------------------------------------------------------------

    def check(self, n_styles: Optional[int] = None, *, name: Namer = python_name) -> "StylizeSettings":
        """The checked copy; ValueError (one line, the setting named by ``name``) otherwise.

        ``n_styles``: how many style images the run has (their weights must match).
        """
        values = {}
        for f in FLAGS:
            try:
                values[f] = _FIELD_CHECKS[f](getattr(self, f))
            except _Bad as e:
                raise ValueError(f"{name(f)} {e}") from None
        s = dataclasses.replace(self, **values)
        if s.stride > s.patch_size:
            raise ValueError(f"{name('stride')} ({s.stride}) must not exceed {name('patch_size')} ({s.patch_size})")
        if s.style_weights is not None:
            if n_styles is not None and len(s.style_weights) != n_styles:
                raise ValueError(f"{name('style_weights')} got {plural(len(s.style_weights), 'value')} for "
                                 f"{plural(n_styles, 'style')}")
            if not any(w > 0 for w in s.style_weights):
                raise ValueError(f"{name('style_weights')} must not all be 0")
            from ..ops.checks import check_weight_ratios  # imports torch: only when there are weights

            check_weight_ratios(name("style_weights"), s.style_weights)
        return s

    # --- the command line ---------------------------------------------------------------------------

    def command_args(self) -> list:
        """The options that differ from the defaults, as command-line words (``repr`` of a float
        reads back as the same float)."""
        defaults = StylizeSettings()
        words = []
        for f, flag in FLAGS.items():
            value = getattr(self, f)
            if value == getattr(defaults, f) or value is None:
                continue
            if isinstance(value, bool):
                words.append(flag)
            elif f == "style_weights":
                words += [flag, *(_number(w) for w in value)]
            else:
                words += [flag, _number(value) if isinstance(value, float) else str(value)]
        return words

    def command(self, content: str, styles: Sequence[str], output: str, *, content_mask: Optional[str] = None,
                style_masks: Optional[Sequence[str]] = None) -> str:
        """``styleswap stylize CONTENT STYLE... -o OUTPUT [options]`` for these settings, shell-quoted."""
        words = ["styleswap", "stylize", str(content), *map(str, styles), "-o", str(output), *self.command_args()]
        if content_mask is not None:
            words += ["--content-mask", str(content_mask)]
        if style_masks:
            words += ["--style-mask", *map(str, style_masks)]
        return shlex.join(words)

    # --- the pipeline -------------------------------------------------------------------------------

    def bank_kwargs(self) -> Mapping[str, Any]:
        """What :class:`~styleswap_ext.pipeline.StyleBank` takes from these settings (besides the
        styles, the encoder and the device) -- as ``cli.runners._style_bank`` passes them."""
        return dict(style_size=self.style_size, style_weights=None if self.style_weights is None else
                    list(self.style_weights), patch_size=self.patch_size, stride=self.stride,
                    precision=self.precision, tile_size=self.tile_size, search=self.search)

    def checked(self, styles, **inputs):
        """These settings as the pipeline's one checked object
        (:class:`~styleswap_ext.pipeline.stylization.CheckedSettings`, imports torch) for ``styles``;
        ``inputs``: what a run adds (``device`` resolved by the front end, masks)."""
        from .stylization import CheckedSettings

        return CheckedSettings.of(styles, **{**{f: getattr(self, f) for f in FLAGS}, **inputs})

    def stylize_kwargs(self) -> Mapping[str, Any]:
        """What :func:`~styleswap_ext.pipeline.stylize` takes from these settings with a StyleBank --
        as ``cli.runners._stylize_one`` passes them."""
        return dict(method=self.method, content_size=self.content_size, alpha=self.alpha,
                    preserve_color=self.preserve_color, iters=self.iters, init=self.init, lr=self.lr,
                    tv_weight=self.tv_weight, tile_size=self.tile_size)


def _number(x: Union[int, float]) -> str:
    """A number as a command-line word that parses back to the same value (``1.0`` -> ``1``)."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)

"""styleswap: fast, exact patch-based style swap (Chen & Schmidt 2016) for PyTorch.

Operator API (features in, features out):

* :func:`style_swap` / :class:`StyleSwap` -- rebuild content features from their best-matching
  style patches (fused C++/CUDA kernels; autograd and ``torch.compile`` aware);
* :func:`match_patches` -- only the indices of the chosen style patches;
* :class:`PatchBank` -- the normalised style patch bank, prepared once and reused for many
  contents (video frames, collections): ``PatchBank(style).swap(content)``;
* :mod:`styleswap_ext.ops.reference` -- the paper's conv2d/argmax/conv_transpose2d formulation.

The names below are loaded on first use (PEP 562), so ``import styleswap_ext`` alone, and with it
``styleswap --help`` or ``styleswap_ext.__version__``, does not pay for importing torch and the
compiled library (about 2 s). The first use of any of them (``styleswap_ext.style_swap``,
``from styleswap_ext import PatchBank``, ...) or ``import styleswap_ext.ops`` registers the
``styleswap::`` ops with torch. Where torch is already imported (``import torch`` first, the usual
case in a PyTorch program), ``import styleswap_ext`` registers them at once, as torchvision does, so
``torch.ops.styleswap.*`` is there without touching a name first.

The package's folders are its layers, each importing only those below it: ``apps`` (the command
line and the studio) -> ``pipeline`` (images in, images out) -> ``models`` (the networks) and ``ops``
(the operator) -> ``_util`` (private helpers); tests/test_layers.py keeps it so.
"""

import importlib
import sys

__version__ = "0.1.0"  # the one place: pyproject.toml reads it from here

# public name -> submodule that defines it
_LAZY = {
    "StyleSwap": "ops",
    "CUDA_BUILT": "ops",
    "match_patches": "ops",
    "style_swap": "ops",
    "PatchBank": "ops",
    "stylize": "pipeline",  # image-level API: encoder, swap, decoder or optimisation
}

__all__ = ["StyleSwap", "PatchBank", "match_patches", "style_swap", "stylize", "CUDA_BUILT"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups do not come back here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


if "torch" in sys.modules:  # torch's import cost is paid already: register the ops now
    importlib.import_module(".ops", __name__)

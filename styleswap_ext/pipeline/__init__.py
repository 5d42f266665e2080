"""Images in, images out: stylize and its settings, the search choice, tiling, image I/O, the memory
plan, masks, video, distribution over processes, decoder training. May import models, ops and _util.

Like the package itself, this one loads lazily: the torch-free modules (settings, search_choice) come
without torch, and ``styleswap_ext.pipeline.stylize`` (and the other names of
:mod:`~styleswap_ext.pipeline.stylization`) load it on first use.
"""

import importlib

# the names of .stylization offered here, as before the package had folders
_STYLIZATION = ("stylize", "StyleBank", "TemporalState", "DEFAULT_TEMPORAL_WEIGHT", "optimize_image", "objective",
                "swap_features", "preserve_colors", "total_variation", "resolve_device", "PRECISIONS", "METHODS",
                "INITS", "TV_WEIGHT", "NORM_EPS")

__all__ = ["stylize", "StyleBank", "optimize_image", "objective", "swap_features", "preserve_colors", "PRECISIONS",
           "METHODS", "INITS", "TV_WEIGHT", "resolve_device", "total_variation"]  # as stylization's


def __getattr__(name):
    if name in _STYLIZATION:
        value = getattr(importlib.import_module(".stylization", __name__), name)
        globals()[name] = value  # later lookups do not come back here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_STYLIZATION))

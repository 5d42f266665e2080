"""Images in, images out: stylize and its settings, the search choice, tiling, image I/O, the memory
plan, masks, video, distribution over processes, decoder training. May import models, ops and _util.

Like the package itself, this one loads lazily: the torch-free modules (settings, search_choice) come
without torch, and ``styleswap_ext.pipeline.stylize`` (and the other names of
:mod:`~styleswap_ext.pipeline.stylization`) load it on first use.
"""

import importlib

# the names of .stylization offered here: those from before the package had folders, and CheckedSettings
_STYLIZATION = ("stylize", "StyleBank", "CheckedSettings", "TemporalState", "DEFAULT_TEMPORAL_WEIGHT",
                "optimize_image", "objective", "swap_features", "preserve_colors", "total_variation", "resolve_device",
                "PRECISIONS", "METHODS", "INITS", "TV_WEIGHT", "NORM_EPS")

# as stylization's
__all__ = ["stylize", "StyleBank", "CheckedSettings", "optimize_image", "objective", "swap_features",
           "preserve_colors", "PRECISIONS", "METHODS", "INITS", "TV_WEIGHT", "resolve_device", "total_variation"]


def __getattr__(name):
    if name in _STYLIZATION:
        value = getattr(importlib.import_module(".stylization", __name__), name)
        globals()[name] = value  # later lookups do not come back here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_STYLIZATION))

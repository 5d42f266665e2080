"""The pipeline's option values, in a module without torch: the command line builds its parser
from them before anything heavy is imported (``styleswap --help`` in a fraction of a second).
:mod:`styleswap_ext.pipeline` re-exports them."""

METHODS = ("decoder", "optimize")
INITS = ("content", "random", "decoder")
PRECISIONS = ("fp32", "tf32", "bf16")
SEARCHES = ("auto", "exact", "approximate")  # the pipeline's; the ops take the last two (styleswap_ext.pipeline.search_choice)
TV_WEIGHT = 1e-5  # on a [0, 1] image; see styleswap_ext.pipeline's docstring
FEATURE_STEP = 4  # image px per relu3_1 feature position (VGGEncoder().downsampling; a test ties them)
MIN_TILE_SIZE = 96  # --tile-size minimum: tiling.min_tile_size(VGGEncoder()), 8 encoder halos (a test ties them)
# channels the approximate search ranks on (styleswap_ext.ops.REDUCED_CHANNELS; memory_plan counts its index)
REDUCED_CHANNELS = 64


def matches_from_maps(device_type: str, stride: int) -> bool:
    """Whether the exact search runs from the style maps (op ``match_styles``, csrc/cpu/match_styles_cpu.cpp:
    pixel products summed over the patch offsets, no patch matrix): on the CPU at stride 1. Elsewhere
    the patch bank (``prepare_bank`` + ``match_bank``). The one rule for the ops, the search choice's
    estimate and the memory plan."""
    return device_type == "cpu" and stride == 1

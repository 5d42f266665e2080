"""The operator: its Python API and fake kernels (swap), the argument checks, the reference formulation,
the patch bank, the module wrapper and the approximate index. May import ``_C`` and ``_util`` only.

Importing this package registers the ``styleswap::`` ops with torch (the compiled library ``_C``).
"""

from .checks import bank_patch_labels
from .module import StyleSwap
from .patch_bank import PatchBank
from .swap import (CANDIDATES, CUDA_BUILT, DEFAULT_PROBES, MAX_SEED, REDUCED_CHANNELS, REFINE, SEARCHES, IvfIndex,
                   SearchArgs, bank_inv_norm, bank_layout, build_index, check_search, default_clusters,
                   index_groups, match_controls, match_ivf, match_patches, match_styles, matches_from_maps,
                   num_style_patches, principal_basis, style_swap)

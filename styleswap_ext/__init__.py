"""styleswap: fast, exact patch-based style swap (Chen & Schmidt 2016) for PyTorch.

Operator API (features in, features out):

* :func:`style_swap` / :class:`StyleSwap` -- rebuild content features from their best-matching
  style patches (fused C++/CUDA kernels; autograd and ``torch.compile`` aware);
* :func:`match_patches` -- only the indices of the chosen style patches;
* :class:`PatchBank` -- the normalised style patch bank, prepared once and reused for many
  contents (video frames, collections): ``PatchBank(style).swap(content)``;
* :mod:`styleswap_ext.reference` -- the paper's conv2d/argmax/conv_transpose2d formulation.
"""

from .module import StyleSwap
from .ops import CUDA_BUILT, match_patches, style_swap
from .patch_bank import PatchBank
from .pipeline import stylize  # image-level API: encoder, swap, decoder or optimisation

__all__ = ["StyleSwap", "PatchBank", "match_patches", "style_swap", "stylize", "CUDA_BUILT"]

"""Bad input gives a clear exception that names the argument."""

import pytest
import torch

import styleswap_ext as ss
from styleswap_ext.ops import reference as ref

C = torch.randn(2, 4, 8, 8)
S = torch.randn(4, 6, 6)

CASES = [
    ("content ndim", dict(content=torch.randn(4, 8)), ValueError, r"content must be \(N, C, H, W\)"),
    ("style ndim", dict(style=torch.randn(2, 1, 4, 6, 6)), ValueError, r"style must be \(C, Hs, Ws\)"),
    ("channel mismatch", dict(style=torch.randn(5, 6, 6)), ValueError, "style has 5 channels but content has 4"),
    ("content smaller than patch", dict(content=torch.randn(2, 4, 2, 8)), ValueError, r"content \(2x8\) is smaller"),
    ("style smaller than patch", dict(style=torch.randn(4, 6, 2)), ValueError, r"style \(6x2\) is smaller"),
    ("patch_size < 1", dict(patch_size=0), ValueError, "patch_size must be >= 1"),
    ("patch_size float", dict(patch_size=3.0), TypeError, "patch_size must be an int"),
    ("stride < 1", dict(stride=0), ValueError, "stride must be >= 1"),
    ("stride > patch", dict(stride=4), ValueError, r"stride \(4\) must not exceed patch_size \(3\)"),
    ("dtype mismatch", dict(style=S.double()), TypeError, "style has dtype torch.float64 but content has torch.float32"),
    ("integer content", dict(content=torch.ones(2, 4, 8, 8, dtype=torch.int64)), TypeError, "content must be a floating"),
    ("integer style", dict(style=torch.ones(4, 6, 6, dtype=torch.int32)), TypeError, "style must be a floating"),
    ("device mismatch", dict(style=S.to("meta")), ValueError, "style is on meta but content is on cpu"),
    ("NaN content", dict(content=C.clone().index_fill_(3, torch.tensor([2]), float("nan"))), ValueError, "content contains NaN or Inf"),
    ("Inf style", dict(style=S.clone().index_fill_(2, torch.tensor([0]), float("inf"))), ValueError, r"styles?(\[0\])? contains NaN or Inf"),
    ("empty content", dict(content=torch.empty(0, 4, 8, 8)), ValueError, "content is empty"),
    ("empty style", dict(style=torch.empty(4, 0, 6)), ValueError, "style is empty"),
    ("empty bank", dict(style=[]), ValueError, "style is an empty list"),
    ("per-sample batch", dict(style=torch.randn(3, 4, 6, 6)), ValueError, "per-sample style batch must equal"),
    ("not a tensor", dict(content=[[1.0]]), TypeError, "content must be a torch.Tensor"),
    ("bank member", dict(style=[S, "x"]), TypeError, r"style\[1\] must be a torch.Tensor"),
]


@pytest.mark.parametrize("fn", [ss.style_swap, ss.match_patches, ref.style_swap, ref.match_patches],
                         ids=["style_swap", "match_patches", "ref.style_swap", "ref.match_patches"])
@pytest.mark.parametrize("what,override,exc,msg", CASES, ids=[c[0] for c in CASES])
def test_bad_input(fn, what, override, exc, msg):
    kw = dict(content=C, style=S, patch_size=3, stride=1) | override
    with pytest.raises(exc, match=msg):
        fn(**kw)


def test_module_rejects_bad_geometry():
    with pytest.raises(ValueError, match="patch_size must be >= 1"):
        ss.StyleSwap(patch_size=0)
    with pytest.raises(ValueError, match=r"stride \(2\) must not exceed"):
        ss.StyleSwap(patch_size=1, stride=2)


def test_cpp_ops_check_their_arguments_too():
    """The registered ops are a public surface of their own: TORCH_CHECK guards them."""
    with pytest.raises(ValueError, match="content must be"):
        torch.ops.styleswap.match_patches(torch.randn(4, 8, 8), [S[None]], 3, 1)
    with pytest.raises(ValueError, match="styles must hold at least one"):
        torch.ops.styleswap.match_patches(C, [], 3, 1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        torch.ops.styleswap.style_swap(C * float("inf"), [S[None]], 3, 1)
    idx = torch.ops.styleswap.match_patches(C, [S[None]], 3, 1)
    with pytest.raises(IndexError, match="out of range"):
        torch.ops.styleswap.swap_gather(idx + 1000, [S[None]], 3, 1, 8, 8)
    with pytest.raises(ValueError, match="do not match"):
        torch.ops.styleswap.swap_gather(idx, [S[None]], 3, 1, 9, 8)

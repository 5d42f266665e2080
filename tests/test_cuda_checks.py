"""The CUDA ops' input checks (csrc/cuda/ops_cuda.cpp), without a GPU.

Those checks run on the host before any GPU work, so a build with the CUDA kernels (CI compiles
them with FORCE_CUDA=1 on a machine without a GPU) can call the CUDA kernels directly through the
dispatcher (``redispatch`` to the CUDA key) with CPU tensors and see each check raise its error.
The checks that need a device (NaN/Inf, index range) are in tests/test_cuda.py.
"""

from __future__ import annotations

import pytest
import torch

import styleswap_ext

pytestmark = pytest.mark.skipif(not styleswap_ext.CUDA_BUILT,
                                reason="styleswap_ext was built without the CUDA kernels (FORCE_CUDA=1 builds them)")

CUDA = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
OPS = torch.ops.styleswap


def _style():
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))


def test_unsupported_dtype_is_a_type_error_not_a_crash():
    st = _style().to(torch.float8_e4m3fn)
    with pytest.raises(TypeError, match="CUDA supports float32, float64, float16 and bfloat16"):
        OPS.prepare_bank.default.redispatch(CUDA, [st], 3, 1)


@pytest.mark.parametrize("op", ["swap_gather", "swap_gather_backward"])
def test_more_styles_than_the_kernel_table_holds(op):
    styles = [_style()] * 33
    idx = torch.zeros(1, 6, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="at most 32 style tensors per bank are supported, got 33"):
        if op == "swap_gather":
            OPS.swap_gather.default.redispatch(CUDA, idx, styles, 3, 1, 8, 8)
        else:
            OPS.swap_gather_backward.default.redispatch(CUDA, torch.randn(1, 4, 8, 8), idx, styles, 3, 1)


def test_a_bank_without_the_cuda_layout_is_refused():
    st = _style()
    patches, inv = OPS.prepare_bank([st], 3, 1)  # the CPU layout: 36 rows of 36 values, unpadded
    with pytest.raises(ValueError, match=r"are not a CUDA bank for 36-value patches \(rows padded to a multiple of 256"):
        OPS.match_bank.default.redispatch(CUDA, st, patches, inv, 36, 3, 1)


def test_generic_checks_come_first():
    """The shared argument checks (csrc/styleswap.cpp) still run before the CUDA-specific ones."""
    with pytest.raises(ValueError, match="stride \\(4\\) must not exceed patch_size"):
        OPS.prepare_bank.default.redispatch(CUDA, [_style()], 3, 4)
    with pytest.raises(TypeError, match="indices must be int64"):
        OPS.swap_gather.default.redispatch(CUDA, torch.zeros(1, 6, 6, dtype=torch.int32), [_style()], 3, 1, 8, 8)


def test_match_kernel_launch_counts_without_a_gpu():
    """The counters the Hopper-kernel tests read exist in a CUDA build and start at zero here (no
    GPU: no match kernel has run); tests/test_cuda.py checks that they move."""
    from styleswap_ext import _C

    counts = _C.match_kernel_launches()
    assert set(counts) == {"wmma", "wgmma", "tma", "float64", "cublas", "cublas_fused"}
    if not torch.cuda.is_available():
        assert all(v == 0 for v in counts.values()), counts


@pytest.mark.parametrize("fused", [False, True])
def test_tiled_private_op_refuses_a_strided_inv_norm_before_any_work(fused):
    """_match_bank_tiled's CUDA entry runs check_tiled_args first: an inv_norm without unit stride along
    its rows is a ValueError naming it (it used to reach TORCH_INTERNAL_ASSERT in the fused reducer)."""
    st = _style()
    patches, inv = OPS.prepare_bank([st], 3, 1)
    strided = torch.stack([inv, inv], dim=-1)[..., 0]
    with pytest.raises(ValueError, match="inv_norm must have unit stride along its rows"):
        OPS._match_bank_tiled.default.redispatch(CUDA, st, patches, strided, 36, 3, 1, 0, 0, fused)

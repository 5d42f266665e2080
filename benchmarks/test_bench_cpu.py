"""pytest-benchmark view of benchmarks/methods.py (the table with peak memory is cpu_table.py).

    python -m pytest benchmarks/test_bench_cpu.py                     # 32x32 maps, quick
    STYLESWAP_BENCH_SIZES=64,128 python -m pytest benchmarks/test_bench_cpu.py
"""

import os

import pytest

import methods

SIZES = [int(s) for s in os.environ.get("STYLESWAP_BENCH_SIZES", "32").split(",")]
METHODS = ["gemm", "fused", "chunked_torch", "conv_reference"]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("method", METHODS)
def test_style_swap_cpu(benchmark, method, size):
    content, style = methods.features(size)
    benchmark.group = f"{size}x{size} map, 256 channels"
    out = benchmark.pedantic(methods.METHODS[method], args=(content, style), rounds=3, warmup_rounds=1)
    assert out.shape[0] > 0

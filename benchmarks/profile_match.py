"""One match_patches call per mode, for Nsight Compute (gpu_check.sh's `profile` step).

    STYLESWAP_MATCH_KERNEL=tma ncu --clock-control none -k regex:match -c 2 \\
        --section SpeedOfLight --section Occupancy --section MemoryWorkloadAnalysis \\
        python3 benchmarks/profile_match.py

512 px content and style (128² maps of 256 channels, k = 3: 16,129 x 16,129 patches of 2,304
values, 1.2 TFLOP, ~8,000 tiles: fills the chip), random data, TF32 then bf16. The match kernels
are the only kernels whose names contain "match"; -c 2 profiles one launch of each mode.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import styleswap_ext  # noqa: E402

assert torch.cuda.is_available() and styleswap_ext.CUDA_BUILT, "needs a GPU and a CUDA build"
g = torch.Generator().manual_seed(0)
content = torch.randn(1, 256, 128, 128, generator=g)
style = torch.randn(1, 256, 128, 128, generator=g)
for dtype, prec in [(torch.float32, "high"), (torch.bfloat16, "highest")]:
    torch.set_float32_matmul_precision(prec)
    idx = torch.ops.styleswap.match_patches(content.to("cuda", dtype), [style.to("cuda", dtype)], 3, 1)
    torch.cuda.synchronize()
    print(dtype, "kernel", os.environ.get("STYLESWAP_MATCH_KERNEL", "default"), "indices", idx.flatten()[:3].tolist())

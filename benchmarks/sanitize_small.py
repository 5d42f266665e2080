"""Tiny workload for compute-sanitizer (memcheck / racecheck) over every CUDA kernel of styleswap.

Run: compute-sanitizer --tool memcheck python3 benchmarks/sanitize_small.py
     compute-sanitizer --tool racecheck python3 benchmarks/sanitize_small.py
Sizes are tiny (a few blocks per kernel) because the sanitizers slow kernels down 10-1000x. Covers
every match mode (highest = 3xTF32, TF32, bf16, fp16, float64), a content tile that is partly
padding, a style bank of two tensors (shared + per-sample) whose patch count is not a tile multiple,
D not a multiple of 32, the gather and the backward in every dtype.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import styleswap_ext  # noqa: F401

assert torch.cuda.is_available() and styleswap_ext.CUDA_BUILT, "needs a GPU and a CUDA build"
dev = "cuda"
g = torch.Generator().manual_seed(0)
k, s = 3, 1
content = torch.randn(2, 5, 13, 14, generator=g)  # D = 45 (padded to 64), n_c = 132 (2 M-tiles)
styles = [torch.randn(1, 5, 12, 15, generator=g), torch.randn(2, 5, 7, 9, generator=g)]  # n_s = 130 + 35

for dtype, prec in [(torch.float32, "highest"), (torch.float32, "high"), (torch.bfloat16, "highest"),
                    (torch.float16, "highest"), (torch.float64, "highest")]:
    torch.set_float32_matmul_precision(prec)
    c = content.to(dev, dtype)
    sts = [st.to(dev, dtype).requires_grad_() for st in styles]
    idx = torch.ops.styleswap.match_patches(c, sts, k, s)
    out = torch.ops.styleswap.swap_gather(idx, sts, k, s, c.shape[2], c.shape[3])
    out.square().sum().backward()
    torch.cuda.synchronize()
    print(dtype, prec, "ok", idx.flatten()[:4].tolist(), float(out.detach().float().abs().sum()), file=sys.stderr)

# stride 2 with replicate padding of the content grid, k=1 and k=7
for kk, ss in [(2, 2), (1, 1), (7, 3)]:
    c = content.to(dev)
    st = [styles[0].to(dev)]
    idx = torch.ops.styleswap.match_patches(c, st, kk, ss)
    out = torch.ops.styleswap.swap_gather(idx, st, kk, ss, c.shape[2], c.shape[3])
    grads = torch.ops.styleswap.swap_gather_backward(out, idx, st, kk, ss)

# More tiles than the GPU has SMs (12 content x 14 style tiles of 128 x 256): the persistent
# STYLESWAP_MATCH_KERNEL=tma kernel walks several tiles per CTA and reuses its pipeline slots.
for dtype, prec in [(torch.float32, "high"), (torch.bfloat16, "highest")]:
    torch.set_float32_matmul_precision(prec)
    c = torch.randn(1, 8, 40, 40, generator=g).to(dev, dtype)
    st = [torch.randn(1, 8, 60, 60, generator=g).to(dev, dtype)]
    idx = torch.ops.styleswap.match_patches(c, st, 3, 1)
torch.cuda.synchronize()
print("sanitize_small: done")

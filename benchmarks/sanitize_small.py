"""Tiny workload for compute-sanitizer (memcheck / racecheck) over every CUDA kernel of styleswap.

Run: compute-sanitizer --tool memcheck python3 benchmarks/sanitize_small.py
     compute-sanitizer --tool racecheck python3 benchmarks/sanitize_small.py
     python3 benchmarks/sanitize_small.py --dry-run     # on the CPU: checks the script, no GPU needed
Sizes are tiny (a few blocks per kernel) because the sanitizers slow kernels down 10-1000x. Covers
every match mode (highest = 3xTF32, TF32, bf16, fp16, float64), a content tile that is partly
padding, a style bank of two tensors (shared + per-sample) whose patch count is not a tile multiple,
D not a multiple of 32, the gather and the backward in every dtype, and the tiled cuBLAS driver with
both reduces on small ragged tiles. STYLESWAP_MATCH_KERNEL picks the match path of the ops it calls.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import styleswap_ext  # noqa: F401

DRY = "--dry-run" in sys.argv  # the same calls on CPU tensors (no fused reduce): checks the script itself
assert DRY or (torch.cuda.is_available() and styleswap_ext.CUDA_BUILT), "needs a GPU and a CUDA build"
dev = "cpu" if DRY else "cuda"


def sync():
    if not DRY:
        torch.cuda.synchronize()


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
    sync()
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
# The tiled driver (STYLESWAP_MATCH_KERNEL=cublas|cublas_fused; csrc/match_tiled.cpp, cuda/match_reduce.cu)
# through its private op with small tiles: ragged row and column tiles, score-tile row lengths that are
# a multiple of 4 (float4 path of the fused reduce) and odd ones (scalar path: an unpadded bank),
# every dtype, both reduces.
for dtype, prec in [(torch.float32, "high"), (torch.float32, "highest"), (torch.bfloat16, "highest"),
                    (torch.float16, "highest"), (torch.float64, "highest")]:
    torch.set_float32_matmul_precision(prec)
    c = content.to(dev, dtype)
    sts = [st.to(dev, dtype) for st in styles]
    patches, inv = torch.ops.styleswap.prepare_bank(sts, k, s)
    n_s = 130 + 35
    cpu_bank = torch.ops.styleswap.prepare_bank([st.to(dtype) for st in styles], k, s)  # unpadded rows
    for fused in (False,) if DRY else (False, True):
        for rows, cols in [(0, 0), (37, 45), (5, 13), (128, 7)]:
            torch.ops.styleswap._match_bank_tiled(c, patches, inv, n_s, k, s, rows, cols, fused)
        if dtype in (torch.float32, torch.float64):  # a CPU bank is float32 for bf16/fp16 contents
            bank = [t.to(dev) for t in cpu_bank]
            torch.ops.styleswap._match_bank_tiled(c, bank[0], bank[1], n_s, k, s, 9, 11, fused)
    sync()
    print("tiled", dtype, prec, "ok", file=sys.stderr)
sync()
print("sanitize_small: done")

"""The style-swap implementations compared by the benchmarks, on relu3_1-like features.

Every method takes content (1, C, H, W) and style (1, C, Hs, Ws) features, k=3, s=1, and returns
swapped features (except ``gemm``, the floor: the bare n_c x D x n_s product alone).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import styleswap_ext
from styleswap_ext.ops import reference

K = 3
CHUNK = 8192  # content rows per torch.mm in the peer and the floor, as in DESIGN.md section 2


def features(size: int, channels: int = 256, seed: int = 0):
    """relu-like (non-negative, sparse) random features, content and style of the same size."""
    g = torch.Generator().manual_seed(seed)
    content = torch.relu(torch.randn(1, channels, size, size, generator=g))
    style = torch.relu(torch.randn(1, channels, size, size, generator=g))
    return content, style


def fused(content, style):
    """Ours: on the CPU at stride 1 the exact match from the style maps (match_styles: pixel products,
    shifted sums; csrc/cpu/match_styles_cpu.cpp), then the gather."""
    return styleswap_ext.style_swap(content, style, K, 1)


def fused_bank(content, style):
    """Ours as it was until 2026-12-07 on the CPU (and as the GPU runs): the patch bank (n_s x C*k^2)
    multiplied with the content patches in cache-sized tiles (match_bank), then the gather."""
    patches, inv_norm = torch.ops.styleswap.prepare_bank([style], K, 1)
    idx = torch.ops.styleswap.match_bank(content, patches, inv_norm, patches.shape[1], K, 1)
    return torch.ops.styleswap.swap_gather(idx, [style], K, 1, content.shape[2], content.shape[3])


def conv_reference(content, style):
    return reference.style_swap(content, style, K, 1)


def chunked_torch(content, style):
    """The best a PyTorch user writes by hand: chunked mm + argmax, then gather + fold / count."""
    h, w = content.shape[-2:]
    style_cols = F.unfold(style, K)[0].T.contiguous()  # (n_s, D)
    normed = style_cols / (style_cols.norm(dim=1, keepdim=True) + 1e-8)
    content_cols = F.unfold(content, K)[0].T  # (n_c, D)
    idx = torch.cat([(content_cols[i : i + CHUNK] @ normed.T).argmax(dim=1)
                     for i in range(0, content_cols.shape[0], CHUNK)])
    chosen = style_cols[idx].T[None]  # (1, D, n_c)
    out = F.fold(chosen, (h, w), K)
    count = F.fold(torch.ones_like(chosen[:, :1]).expand(1, K * K, -1), (h, w), K)
    return out / count


def gemm(content, style):
    """The floor: the same n_c x D x n_s product through torch.mm, CHUNK rows at a time, nothing else."""
    a = F.unfold(content, K)[0].T.contiguous()
    b = F.unfold(style, K)[0].contiguous()  # (D, n_s)
    out = torch.empty(min(CHUNK, a.shape[0]), b.shape[1])
    for i in range(0, a.shape[0], CHUNK):
        rows = a[i : i + CHUNK]
        torch.mm(rows, b, out=out[: rows.shape[0]])
    return out


def faiss_flat_ip(content, style):
    """FAISS exact inner-product search (IndexFlatIP, k=1) on normalised style patches, then the same fold."""
    import faiss  # optional: pip install faiss-cpu

    h, w = content.shape[-2:]
    style_cols = F.unfold(style, K)[0].T.contiguous()
    normed = (style_cols / (style_cols.norm(dim=1, keepdim=True) + 1e-8)).numpy()
    index = faiss.IndexFlatIP(normed.shape[1])
    index.add(normed)
    _, idx = index.search(F.unfold(content, K)[0].T.contiguous().numpy(), 1)
    chosen = style_cols[torch.from_numpy(idx[:, 0])].T[None]
    out = F.fold(chosen, (h, w), K)
    count = F.fold(torch.ones_like(chosen[:, :1]).expand(1, K * K, -1), (h, w), K)
    return out / count


METHODS = {
    "gemm": gemm,
    "fused": fused,
    "fused_bank": fused_bank,
    "chunked_torch": chunked_torch,
    "conv_reference": conv_reference,
    "faiss": faiss_flat_ip,
}

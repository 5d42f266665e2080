"""Gradients, torch.library registration checks and torch.compile."""

import pytest
import torch

import styleswap_ext as ss
from styleswap_ext.ops import reference as ref


def _inputs(seed=0, per_sample=False):
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(2, 4, 7, 6, generator=g, dtype=torch.float64)
    style = torch.randn(2 if per_sample else 1, 4, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    return content, style


@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (2, 2), (1, 1)])
@pytest.mark.parametrize("per_sample", [False, True])
def test_gradcheck_style(k, s, per_sample):
    content, style = _inputs(k + s, per_sample)
    assert torch.autograd.gradcheck(lambda st: ss.style_swap(content, st, k, s), (style,))
    assert torch.autograd.gradgradcheck(lambda st: ss.style_swap(content, st, k, s), (style,))


def test_gradcheck_bank():
    g = torch.Generator().manual_seed(1)
    content = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    a = torch.randn(3, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 5, 9, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ss.style_swap(content, [a, b], 3, 1), (a, b))


def test_backward_equals_reference_autograd():
    g = torch.Generator().manual_seed(2)
    content = torch.randn(3, 8, 15, 13, generator=g)
    style = torch.randn(1, 8, 12, 14, generator=g, requires_grad=True)
    upstream = torch.randn(3, 8, 15, 13, generator=g)
    (ss.style_swap(content, style, 3, 2) * upstream).sum().backward()
    ours, style.grad = style.grad.clone(), None
    (ref.style_swap(content, style, 3, 2) * upstream).sum().backward()
    torch.testing.assert_close(ours, style.grad)


def test_content_gets_no_gradient():
    content, style = _inputs(3)
    content.requires_grad_(True)
    ss.style_swap(content, style).sum().backward()
    assert content.grad is None  # d/d(content) = 0: the indices are piecewise constant in it
    assert style.grad is not None and style.grad.abs().sum() > 0


def test_opcheck():
    """torch.library's own consistency checks (schema, fake kernel, autograd registration)."""
    g = torch.Generator().manual_seed(4)
    content = torch.randn(2, 5, 9, 8, generator=g)
    styles = [torch.randn(1, 5, 7, 7, generator=g, requires_grad=True), torch.randn(2, 5, 6, 8, generator=g)]
    idx = torch.ops.styleswap.match_patches(content, styles, 3, 1)
    torch.library.opcheck(torch.ops.styleswap.match_patches.default, (content, styles, 3, 1))
    torch.library.opcheck(torch.ops.styleswap.swap_gather.default, (idx, styles, 3, 1, 9, 8))
    grad = torch.randn(2, 5, 9, 8, generator=g)
    torch.library.opcheck(torch.ops.styleswap.swap_gather_backward.default, (grad, idx, styles, 3, 1))


def test_torch_compile_fullgraph_matches_eager():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.swap = ss.StyleSwap(3, 1)

        def forward(self, content, style):
            return self.swap(torch.relu(self.proj(content)), torch.relu(self.proj(style))).mean(dim=1)

    torch.manual_seed(5)
    net = Net()
    content, style = torch.rand(2, 3, 20, 18), torch.rand(1, 3, 16, 17)
    eager = net(content, style)
    compiled = torch.compile(net, fullgraph=True)
    torch.testing.assert_close(compiled(content, style), eager)
    # Gradients flow to the parameters through the style branch, identically.
    compiled(content, style).sum().backward()
    g_compiled = net.proj.weight.grad.clone()
    net.zero_grad()
    net(content, style).sum().backward()
    torch.testing.assert_close(g_compiled, net.proj.weight.grad)

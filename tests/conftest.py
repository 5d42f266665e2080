"""Shared fixtures: the VGG-19 weights from ../shared, small synthetic images, isolated env."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# the project's shared folder beside the checkout; STYLESWAP_TEST_SHARED names it elsewhere (a git worktree)
SHARED = Path(os.environ.get("STYLESWAP_TEST_SHARED") or REPO.parent / "shared")
SHARED_VGG = SHARED / "weights" / "vgg19_conv1_1-conv3_1_torchvision.pth"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """No test sees the user's STYLESWAP_VGG19_WEIGHTS or cache: each gets an empty cache dir."""
    monkeypatch.delenv("STYLESWAP_VGG19_WEIGHTS", raising=False)
    monkeypatch.setenv("STYLESWAP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("STYLESWAP_DEBUG", raising=False)


@pytest.fixture(scope="session")
def bench_script():
    """Import benchmarks/NAME.py as a module (benchmarks/ is not a package): ``bench_script(NAME)``."""
    import importlib.util

    def load(name):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def vgg_weights() -> Path:
    if not SHARED_VGG.is_file():
        pytest.skip(f"VGG-19 weight slice not found at {SHARED_VGG} (the shared/weights directory next to the repo)")
    return SHARED_VGG


@pytest.fixture(scope="session")
def vgg_state_dict(vgg_weights):
    return torch.load(vgg_weights, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def encoder(vgg_weights):
    from styleswap_ext.models import load_encoder

    return load_encoder(vgg_weights)


def _content_array(w=48, h=36):
    """A reddish scene: gradient background, a bright disc and a dark bar (structure for VGG)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0] = 0.75 + 0.2 * xx / w
    img[..., 1] = 0.25 + 0.2 * yy / h
    img[..., 2] = 0.2
    disc = (xx - w * 0.6) ** 2 + (yy - h * 0.5) ** 2 < (h * 0.3) ** 2
    img[disc] = (0.95, 0.85, 0.7)
    img[int(h * 0.2):int(h * 0.3), 5:int(w * 0.4)] = (0.1, 0.05, 0.05)
    return (img * 255).round().astype(np.uint8)


def _style_array(w=48, h=48):
    """Blue/yellow diagonal stripes and swirls: strong, distinct colours."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = np.sin((xx + yy) / 3.0) + 0.5 * np.sin(xx / 2.0) * np.cos(yy / 5.0)
    blue = np.array([0.1, 0.2, 0.8], np.float32)
    yellow = np.array([0.95, 0.85, 0.2], np.float32)
    mix = (t[..., None] > 0.3).astype(np.float32)
    img = blue * (1 - mix) + yellow * mix
    return (img * 255).round().astype(np.uint8)


@pytest.fixture
def content_pil() -> Image.Image:
    return Image.fromarray(_content_array(), "RGB")


@pytest.fixture
def style_pil() -> Image.Image:
    return Image.fromarray(_style_array(), "RGB")


@pytest.fixture
def image_files(tmp_path, content_pil, style_pil):
    content = tmp_path / "content.png"
    style = tmp_path / "style.jpg"
    content_pil.save(content)
    style_pil.save(style, quality=95)
    return content, style

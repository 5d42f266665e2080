"""Sharding a directory across torchrun processes: each file once, same results as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from styleswap_ext.pipeline import distributed

REPO = Path(__file__).resolve().parents[1]


def test_shard_rule_is_disjoint_and_covering():
    items = [f"f{i:02d}.png" for i in range(11)][::-1]
    shards = [distributed.shard(items, distributed.World(r, 3, r)) for r in range(3)]
    assert shards[1] == sorted(items)[1::3]
    assert sorted(sum(shards, [])) == sorted(items)
    assert len(set(sum(shards, []))) == len(items)


def test_world_from_env(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.world() == distributed.World(2, 4, 0)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK"):
        distributed.world()


@pytest.fixture
def random_decoder_ckpt(tmp_path):
    from styleswap_ext.models import Decoder

    torch.manual_seed(0)
    path = tmp_path / "decoder.pth"
    torch.save({"state_dict": Decoder().state_dict(), "config": {"instance_norm": True}}, path)
    return path


def _run(args, env_extra, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env_extra}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_torchrun_two_processes_match_single_process(tmp_path, vgg_weights, random_decoder_ckpt, style_pil):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    names = [f"img{i}.png" for i in range(5)]
    for n in names:
        Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(src / n)
    style = tmp_path / "style.png"
    style_pil.save(style)
    common = ["stylize", str(src), str(style), "--method", "decoder", "--decoder-weights", str(random_decoder_ckpt),
              "--device", "cpu"]
    env = {"STYLESWAP_VGG19_WEIGHTS": str(vgg_weights)}
    single = _run(["-m", "styleswap_ext", *common, "-o", str(tmp_path / "single")], env, REPO)
    assert single.returncode == 0, single.stderr
    multi = _run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0",
                  "-m", "styleswap_ext", *common, "-o", str(tmp_path / "multi")], env, REPO)
    assert multi.returncode == 0, multi.stderr
    # both processes worked: rank 0 took files 0, 2, 4 and rank 1 files 1, 3
    assert "wrote 3 images" in multi.stderr and "(rank 0 of 2)" in multi.stderr
    assert "wrote 2 images" in multi.stderr and "(rank 1 of 2)" in multi.stderr
    want = sorted(f"img{i}_stylized.png" for i in range(5))
    assert sorted(os.listdir(tmp_path / "single")) == want
    assert sorted(os.listdir(tmp_path / "multi")) == want
    for n in want:
        a = np.asarray(Image.open(tmp_path / "single" / n))
        b = np.asarray(Image.open(tmp_path / "multi" / n))
        assert np.array_equal(a, b), n

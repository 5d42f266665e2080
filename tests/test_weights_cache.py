"""`styleswap weights install PATH` / models.install_vgg_weights: the VGG-19 weights go into the
cache (layers and sha256 checked), where every later run finds them offline."""

from __future__ import annotations

import pytest
import torch

from cli_process import FAST, error_line, styleswap
from styleswap_ext.apps import cli
from styleswap_ext import models


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("tried to download the VGG-19 weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def test_install_the_slice_then_load_offline(vgg_weights, vgg_state_dict, no_download):
    target = models.install_vgg_weights(vgg_weights)
    assert target == models.cache_dir() / "vgg19_conv1_1-conv3_1_torchvision.pth" and target.is_file()
    enc = models.load_encoder()  # no argument, no environment variable: the cache
    for key, value in vgg_state_dict.items():
        torch.testing.assert_close(enc.features.state_dict()[key], value, rtol=0, atol=0)
    assert models.vgg_weights_status() == {"source": "cache", "path": str(target), "cache": str(target),
                                           "cache_ok": True}


def test_install_a_full_torchvision_checkpoint(tmp_path, vgg_state_dict, no_download):
    """torchvision's layout (features.N.*, deeper layers, classifier) is sliced to conv1_1-conv3_1."""
    full = {f"features.{k}": v for k, v in vgg_state_dict.items()}
    full["features.12.weight"] = torch.randn(256, 256, 3, 3)
    full["classifier.0.weight"] = torch.randn(8, 8)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(full, path)
    target = models.install_vgg_weights(path)
    assert sorted(torch.load(target, weights_only=True)) == sorted(vgg_state_dict)


def test_other_weights_are_refused_and_nothing_is_cached(tmp_path, vgg_state_dict):
    changed = {k: v.clone() for k, v in vgg_state_dict.items()}
    changed["10.bias"][0] += 1e-3
    path = tmp_path / "not_vgg.pth"
    torch.save(changed, path)
    with pytest.raises(RuntimeError, match="sha256"):
        models.install_vgg_weights(path)
    assert not list(models.cache_dir().glob("*"))
    partial = {k: v for k, v in vgg_state_dict.items() if not k.startswith("10.")}
    torch.save(partial, path)
    with pytest.raises(RuntimeError, match="do not contain the layers"):
        models.install_vgg_weights(path)
    assert models.vgg_weights_status()["source"] == "download"


def test_cli_weights_install_and_status(vgg_weights, capsys):
    assert cli.main(["weights", "status"]) == 0
    assert "(absent)" in capsys.readouterr().out
    assert cli.main(["weights", "install", str(vgg_weights)]) == 0
    assert "sha256 checked" in capsys.readouterr().err
    assert cli.main(["weights", "status"]) == 0
    out = capsys.readouterr().out
    assert "present, sha256 checked" in out and "from the cache" in out


def test_cli_weights_install_errors(tmp_path, capsys):
    assert cli.main(["weights", "install", str(tmp_path / "missing.pth")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("styleswap: error: ") and "missing.pth" in err
    assert cli.main(["weights"]) == 2


# --- issue 36: a wrong or broken cache file is never used; weights files named in one line -------------------------

OFFLINE = """
import torch, urllib.error
def _offline(*a, **k):
    raise urllib.error.URLError("no network here (test)")
torch.hub.load_state_dict_from_url = _offline
"""
# a download that works: torchvision's layout of the right weights
DOWNLOAD = """
import torch
def _download(*a, **k):
    return {{"features." + key: v for key, v in torch.load({vgg!r}, weights_only=True).items()}}
torch.hub.load_state_dict_from_url = _download
"""


def _wrong_cache(vgg_state_dict):
    """The cache file holding other weights (one bias changed): what `weights status` calls NOT the expected."""
    changed = {k: v.clone() for k, v in vgg_state_dict.items()}
    changed["10.bias"] += 0.5
    target = models.cache_dir() / "vgg19_conv1_1-conv3_1_torchvision.pth"
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(changed, target)
    return target


def _truncated(src, dst):
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst


def test_a_wrong_cache_file_is_not_used_offline(vgg_state_dict, image_files, tmp_path):
    cache = _wrong_cache(vgg_state_dict)
    out = tmp_path / "out.png"
    proc = styleswap("stylize", *image_files, "-o", out, *FAST, patch=OFFLINE)
    assert proc.returncode == 1, proc.stderr
    error_line(proc, str(cache), "not the expected", "sha256", "styleswap weights install")
    assert not out.exists()


def test_a_wrong_cache_file_is_replaced_by_the_download(vgg_state_dict, vgg_weights, image_files, tmp_path):
    cache = _wrong_cache(vgg_state_dict)
    out = tmp_path / "out.png"
    proc = styleswap("stylize", *image_files, "-o", out, "--method", "optimize", "--iters", "1",
                     patch=DOWNLOAD.format(vgg=str(vgg_weights)))
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if line.startswith("styleswap: warning:")]
    assert len(warned) == 1 and str(cache) in warned[0] and "not the expected" in warned[0], proc.stderr
    assert models.vgg_weights_status()["cache_ok"] is True  # the download put the right slice there


def test_a_truncated_cache_file_is_named_and_not_used(vgg_weights, image_files, tmp_path):
    cache = _truncated(vgg_weights, models.cache_dir() / "vgg19_conv1_1-conv3_1_torchvision.pth")
    proc = styleswap("stylize", *image_files, "-o", tmp_path / "out.png", *FAST, patch=OFFLINE)
    assert proc.returncode == 1, proc.stderr
    error_line(proc, str(cache), "not a complete checkpoint", "styleswap weights install")


def test_installing_a_truncated_file_names_it(vgg_weights, tmp_path):
    bad = _truncated(vgg_weights, tmp_path / "vgg19-dcbb9e9d.pth")
    proc = styleswap("weights", "install", bad)
    assert proc.returncode == 1
    line = error_line(proc, str(bad), "not a complete checkpoint")
    assert "PytorchStreamReader" not in line and "central directory" not in line
    assert not list(models.cache_dir().glob("*"))


def test_installing_a_directory_says_so(tmp_path):
    proc = styleswap("weights", "install", tmp_path)
    assert proc.returncode == 1
    error_line(proc, str(tmp_path), "is a directory")


def test_status_says_when_the_environment_names_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLESWAP_VGG19_WEIGHTS", str(tmp_path / "gone.pth"))
    proc = styleswap("weights", "status")
    assert proc.returncode == 0
    assert "gone.pth" in proc.stdout and "does not exist" in proc.stdout, proc.stdout


def test_offline_without_weights_names_weights_install(monkeypatch, capsys, image_files):
    """Offline with an empty cache: one line that names `styleswap weights install PATH` and
    --vgg-weights (before: it said to copy the 548 MB checkpoint to the cache file's path)."""
    import urllib.error

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    content, style = image_files
    assert cli.main(["stylize", str(content), str(style), "-o", str(content.parent / "o.png"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("styleswap: error: no VGG-19 weights available")
    assert "`styleswap weights install PATH`" in err and "--vgg-weights PATH" in err
    assert "copy it to" not in err

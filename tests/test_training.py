"""Decoder training (styleswap train-decoder): loss, split, checkpoints, resume, CLI errors, DDP.

Everything runs on the CPU at 16-32 px with a handful of iterations.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from styleswap_ext.apps import cli
from styleswap_ext.models import load_decoder
from styleswap_ext.pipeline.training import (CHECKPOINT_KEYS, ImageBank, decoder_loss, export_weights, iteration_generator,
                                    make_targets, param_digest, split_names)

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _write_images(directory, count, seed, sizes=((40, 56), (24, 30), (64, 48))):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([np.sin(xx / (3 + i)), np.cos(yy / (2 + i)), np.sin((xx + yy) / 5)], -1)
        img = np.clip((base * 0.4 + 0.5 + 0.1 * rng.standard_normal((h, w, 3))) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(directory / f"img{i:02d}.png")
    return directory


@pytest.fixture
def data_dirs(tmp_path):
    return _write_images(tmp_path / "content", 6, 0), _write_images(tmp_path / "style", 4, 1)


def _train_argv(data_dirs, out, vgg, *extra):
    c, s = data_dirs
    return ["train-decoder", "--content-dir", str(c), "--style-dir", str(s), "--out", str(out),
            "--image-size", "16", "--batch-size", "1", "--val-fraction", "0.25", "--vgg-weights", str(vgg),
            "-q", *extra]


def _tiny_checkpoint(data_dirs, tmp_path, vgg):
    """A one-iteration train-decoder checkpoint with a half/half train/val split."""
    ck = tmp_path / "ck.pth"
    assert cli.main(_train_argv(data_dirs, ck, vgg, "--iters", "1", "--val-fraction", "0.5", "--val-every", "100")) == 0
    return ck


def _one_error_line(text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("styleswap: error: "), text
    return lines[0]


# --- pieces ----------------------------------------------------------------------------------------


def test_split_disjoint_stable_and_order_independent():
    names = [f"photo_{i:03d}.jpg" for i in range(129)]
    a = split_names(names, 0.05)
    b = split_names(list(reversed(names)), 0.05)
    assert a == b
    assert len(a["val"]) == 7 and len(a["train"]) == 122
    assert not set(a["val"]) & set(a["train"]) and set(a["val"]) | set(a["train"]) == set(names)
    assert len(split_names(names[:2], 0.05)["val"]) == 1  # at least one val image when asked for
    assert split_names(names[:1], 0.5) == {"train": names[:1], "val": []}  # never an empty train set
    assert split_names(names, 0.0)["val"] == []


def test_crops_upscale_small_images_and_are_reproducible(data_dirs):
    c, _ = data_dirs
    bank = ImageBank(c, sorted(p.name for p in c.iterdir()), image_size=32, load_size=48)
    for img in bank.images:  # 24x30 was upscaled so its shorter side is 32; 64x48 down to 48
        assert min(img.shape[-2:]) in (32, 40, 48) and img.dtype == torch.uint8
    a = bank.random_batch(3, iteration_generator(0, 0, 5))
    b = bank.random_batch(3, iteration_generator(0, 0, 5))
    other = bank.random_batch(3, iteration_generator(0, 1, 5))
    assert a.shape == (3, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, other)


def test_targets_follow_the_authors_recipe(encoder):
    torch.manual_seed(0)
    c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    t = make_targets(encoder, c, s)
    assert t.shape == (8, 256, 8, 8)  # 2 content + 2 style + 4 swaps
    from styleswap_ext import style_swap

    hc, hs = encoder(c), encoder(s)
    assert torch.allclose(t[:2], hc) and torch.allclose(t[2:4], hs)
    assert torch.allclose(t[4:6], style_swap(hc, hs[0:1], 3, 1))
    assert torch.allclose(t[6:8], style_swap(hc, hs[1:2], 3, 1))


def test_reference_swap_gives_the_same_targets(encoder):
    from styleswap_ext.pipeline.training import swap_function

    torch.manual_seed(1)
    c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    ext = make_targets(encoder, c, s, swap=swap_function("ext", torch.device("cpu")))
    ref = make_targets(encoder, c, s, swap=swap_function("reference", torch.device("cpu")))
    torch.testing.assert_close(ext, ref, rtol=1e-4, atol=1e-4)
    assert swap_function("auto", torch.device("cpu")) is swap_function("ext", torch.device("cpu"))


def test_loss_decreases_on_a_fixed_batch(encoder):
    from styleswap_ext.models import Decoder

    torch.manual_seed(0)
    c, s = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    targets = make_targets(encoder, c, s)
    decoder = Decoder()
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss, feat, tv = decoder_loss(encoder, decoder, targets, tv_weight=1e-6)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        assert tv.item() > 0 and feat.item() <= loss.item()
    assert losses[-1] < 0.8 * losses[0], losses


# --- end to end through the CLI -------------------------------------------------------------------


def test_train_writes_a_loadable_checkpoint(data_dirs, tmp_path, vgg_weights):
    out = tmp_path / "ck.pth"
    assert cli.main(_train_argv(data_dirs, out, vgg_weights, "--iters", "3", "--val-every", "2",
                                "--log-every", "1")) == 0
    ck = torch.load(out, map_location="cpu", weights_only=True)
    assert set(CHECKPOINT_KEYS) <= set(ck) and ck["iteration"] == 3
    assert ck["config"] == {"instance_norm": True}
    split = ck["split"]
    for kind in ("content", "style"):
        assert split[kind]["val"] and not set(split[kind]["val"]) & set(split[kind]["train"])
    assert [h["iteration"] for h in ck["history"] if "loss" in h] == [1, 2, 3]
    assert [h["iteration"] for h in ck["history"] if "val_loss" in h] == [2, 3]
    dec = load_decoder(out)
    assert param_digest(dec) == param_digest_of_state(ck["state_dict"])
    assert not list(tmp_path.glob(".*.part"))
    shipped = export_weights(out, tmp_path / "weights" / "decoder.pth")
    assert shipped.stat().st_size < 0.5 * out.stat().st_size and shipped.stat().st_size < 10e6
    assert param_digest(load_decoder(shipped)) == param_digest(dec)
    meta = torch.load(shipped, weights_only=True)["meta"]
    assert meta["iteration"] == 3 and meta["val_split"]["content"] == split["content"]["val"]


def param_digest_of_state(sd):
    from styleswap_ext.models import Decoder

    d = Decoder()
    d.load_state_dict(sd)
    return param_digest(d)


def test_resume_equals_an_uninterrupted_run(data_dirs, tmp_path, vgg_weights):
    full, part = tmp_path / "full.pth", tmp_path / "part.pth"
    common = ("--val-every", "100", "--log-every", "1", "--seed", "3", "--swap", "reference")
    assert cli.main(_train_argv(data_dirs, full, vgg_weights, "--iters", "4", *common)) == 0
    assert cli.main(_train_argv(data_dirs, part, vgg_weights, "--iters", "2", *common)) == 0
    assert torch.load(part, weights_only=True)["iteration"] == 2
    assert cli.main(_train_argv(data_dirs, part, vgg_weights, "--iters", "4", "--resume", *common)) == 0
    a, b = torch.load(full, weights_only=True), torch.load(part, weights_only=True)
    assert b["iteration"] == 4 and a["split"] == b["split"]
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=1e-5, atol=1e-6)
    la = [h["loss"] for h in a["history"] if "loss" in h]
    lb = [h["loss"] for h in b["history"] if "loss" in h]
    assert len(lb) == 4 and np.allclose(la, lb, rtol=1e-4)
    # one record per run, chained, for the model card's wall time and hardware
    assert [(r["first_iteration"], r["last_iteration"]) for r in a["runs"]] == [(0, 4)]
    assert [(r["first_iteration"], r["last_iteration"]) for r in b["runs"]] == [(0, 2), (2, 4)]
    assert all(r["seconds"] > 0 and r["device"].startswith("cpu: ") and r["world_size"] == 1 for r in b["runs"])
    from styleswap_ext.pipeline.training import export_weights

    meta = torch.load(export_weights(part, tmp_path / "shipped.pth"), weights_only=True)["meta"]
    assert meta["runs"] == b["runs"]
    assert meta["train_seconds"] == pytest.approx(sum(r["seconds"] for r in b["runs"]), abs=0.11)


def test_losses_read_back_only_when_logged_give_the_same_history(data_dirs, tmp_path, vgg_weights, monkeypatch):
    # On a GPU the loop keeps the losses on the device until a log step (no host sync per step);
    # forced here on the CPU, it must log exactly what reading every step logs.
    from styleswap_ext.pipeline import training

    reads = []
    real_read = training.loop._read_losses
    monkeypatch.setattr(training.loop, "_read_losses", lambda pending, world: reads.append(len(pending)) or
                        real_read(pending, world))
    common = ("--iters", "5", "--val-every", "100", "--log-every", "2", "--seed", "3", "--swap", "reference")
    every, deferred = tmp_path / "every.pth", tmp_path / "deferred.pth"
    assert cli.main(_train_argv(data_dirs, every, vgg_weights, *common)) == 0
    assert reads == [1, 1, 1, 1, 1, 0]
    reads.clear()
    monkeypatch.setattr(training.loop, "_reads_every_step", lambda device: False)
    assert cli.main(_train_argv(data_dirs, deferred, vgg_weights, *common)) == 0
    assert reads == [2, 2, 1, 0]  # iterations 1-2, 3-4 and 5 (the last), then nothing left after the loop
    a, b = (torch.load(p, weights_only=True)["history"] for p in (every, deferred))
    assert [h["iteration"] for h in a if "loss" in h] == [h["iteration"] for h in b if "loss" in h] == [2, 4, 5]
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all(x[k] == pytest.approx(y[k], rel=1e-5) for k in x)


@pytest.mark.parametrize("deferred_reads", [False, True])
def test_time_limit_stops_cleanly_with_a_checkpoint(data_dirs, tmp_path, vgg_weights, monkeypatch, deferred_reads):
    from styleswap_ext.pipeline import training

    if deferred_reads:  # as on a GPU: the steps since the last log are read back after the loop
        monkeypatch.setattr(training.loop, "_reads_every_step", lambda device: False)
    out = tmp_path / "ck.pth"
    assert cli.main(_train_argv(data_dirs, out, vgg_weights, "--iters", "1000", "--time-limit", "3",
                                "--log-every", "1000")) == 0
    ck = torch.load(out, weights_only=True)
    assert 1 <= ck["iteration"] < 1000
    assert [h["iteration"] for h in ck["history"] if "loss" in h] == [ck["iteration"]]


def test_resume_keeps_the_split_of_the_checkpoint(data_dirs, tmp_path, vgg_weights):
    out = tmp_path / "ck.pth"
    assert cli.main(_train_argv(data_dirs, out, vgg_weights, "--iters", "1", "--val-every", "100")) == 0
    split = torch.load(out, weights_only=True)["split"]
    argv = _train_argv(data_dirs, out, vgg_weights, "--iters", "1", "--val-every", "100", "--resume")
    argv[argv.index("--val-fraction") + 1] = "0.5"  # ignored on resume: the recorded split wins
    Image.new("RGB", (40, 40), (200, 10, 10)).save(data_dirs[0] / "aaa_new.png")  # a new file joins nothing
    assert cli.main(argv) == 0
    assert torch.load(out, weights_only=True)["split"] == split


# --- CLI error paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("change, needle", [
    (("--image-size", "30"), "multiple of 4"),
    (("--image-size", "8"), "--image-size"),
    (("--val-fraction", "1.5"), "--val-fraction"),
    (("--batch-size", "0"), "--batch-size"),
    (("--lr", "0"), "--lr"),
])
def test_bad_arguments_exit_2(data_dirs, tmp_path, vgg_weights, capsys, change, needle):
    argv = _train_argv(data_dirs, tmp_path / "ck.pth", vgg_weights, "--iters", "1")
    if change[0] in argv:
        argv[argv.index(change[0]) + 1] = change[1]
    else:
        argv += list(change)
    assert cli.main(argv) == 2
    assert needle in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "ck.pth").exists()


def test_missing_or_empty_directories(data_dirs, tmp_path, vgg_weights, capsys):
    """A directory that is not there is a usage error (exit 2, before any work); one without images a
    failure of the run (exit 1), as for stylize DIR."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad, needle, code in ((tmp_path / "nope", "directory not found", 2), (empty, "no image files", 1)):
        argv = _train_argv(data_dirs, tmp_path / "ck.pth", vgg_weights, "--iters", "1")
        argv[argv.index("--style-dir") + 1] = str(bad)
        assert cli.main(argv) == code
        assert needle in _one_error_line(capsys.readouterr().err)
    argv = _train_argv(data_dirs, tmp_path / "no" / "ck.pth", vgg_weights, "--iters", "1")
    assert cli.main(argv) == 2
    assert "output directory does not exist" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "ck.pth").exists()


def test_resume_from_a_non_checkpoint_exits_1(data_dirs, tmp_path, vgg_weights, capsys):
    out = tmp_path / "ck.pth"
    torch.save({"weight": torch.zeros(1)}, out)
    assert cli.main(_train_argv(data_dirs, out, vgg_weights, "--iters", "1", "--resume")) == 1
    assert "not a training checkpoint" in _one_error_line(capsys.readouterr().err)


def test_resume_refuses_to_change_the_architecture(data_dirs, tmp_path, vgg_weights, capsys):
    out = tmp_path / "ck.pth"
    assert cli.main(_train_argv(data_dirs, out, vgg_weights, "--iters", "1", "--val-every", "100")) == 0
    before = out.read_bytes()
    argv = _train_argv(data_dirs, out, vgg_weights, "--iters", "2", "--resume", "--no-instance-norm")
    assert cli.main(argv) == 1
    assert "--no-instance-norm needs a new --out" in _one_error_line(capsys.readouterr().err)
    assert out.read_bytes() == before  # the checkpoint is untouched


# --- DistributedDataParallel, 2 CPU processes ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_gloo(data_dirs, tmp_path, vgg_weights):
    out = tmp_path / "ddp.pth"
    env = {k: v for k, v in os.environ.items() if k not in ("STYLESWAP_DEBUG", "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    argv = _train_argv(data_dirs, out, vgg_weights, "--iters", "2", "--val-every", "2", "--device", "cpu")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "styleswap_ext", *argv]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = dict(re.findall(r"\[rank (\d)/2\] iterations 0\.\.2 params_sha256=([0-9a-f]{64})", proc.stderr))
    assert set(ranks) == {"0", "1"}, proc.stderr[-3000:]
    ck = torch.load(out, weights_only=True)
    assert ck["iteration"] == 2
    saved = param_digest_of_state(ck["state_dict"])
    assert ranks["0"] == ranks["1"] == saved  # DDP kept both replicas identical, and rank 0 saved them


# --- the quality report script (benchmarks/quality_report.py), smoke test ------------------------------

UST_DIR = REPO.parent / "shared" / "weights" / "ust_baseline"


def test_quality_report_smoke(data_dirs, tmp_path, vgg_weights, capsys, bench_script):
    if not (UST_DIR / "vgg_normalised_conv3_1.pth").is_file():
        pytest.skip(f"UST baseline weights not found in {UST_DIR} (the shared/weights directory next to the repo)")
    ck = _tiny_checkpoint(data_dirs, tmp_path, vgg_weights)
    qr = bench_script("quality_report")
    out = tmp_path / "q"
    c, s = data_dirs
    assert qr.main(["--decoder", str(ck), "--content-dir", str(c), "--style-dir", str(s), "--ust-dir", str(UST_DIR),
                    "--vgg-weights", str(vgg_weights), "--size", "32", "--pair-size", "24", "--pairs", "1", "--opt-iters", "1", "2",
                    "--grid", "2", "--tile", "32", "--out-dir", str(out), "--device", "cpu"]) == 0
    import json

    res = json.loads((out / "results.json").read_text())
    val = torch.load(ck, weights_only=True)["split"]["content"]["val"]
    assert [r["image"] for r in res["psnr"]] == val  # validation photos only
    assert (res["size"], res["pair_size"], res["style_size"]) == (32, 24, 24)
    assert all(5 < r["ust"] < 60 and 0 < r["ours"] < 60 for r in res["psnr"])
    assert set(res["objective"][0]) >= {"decoder", "opt_1", "opt_2"}
    assert res["objective"][0]["opt_2"] <= res["objective"][0]["opt_1"] * 1.05
    for name in ("grid.png", "pair.png", "reconstruction.png", "quality.md"):
        assert (out / name).is_file()
    assert "UST baseline" in capsys.readouterr().out
    from PIL import Image

    w, h = Image.open(out / "reconstruction.png").size  # rows of photo | ours | UST, equal-sized panels
    assert w % 3 == 0 and 0 < w <= 3 * 32 and 0 < h <= 2 * 32

    # --pairs 0: the PSNR table alone, the same figures as the full report's
    quick = tmp_path / "q0"
    assert qr.main(["--decoder", str(ck), "--content-dir", str(c), "--style-dir", str(s), "--ust-dir", str(UST_DIR),
                    "--vgg-weights", str(vgg_weights), "--size", "32", "--pairs", "0", "--out-dir", str(quick),
                    "--device", "cpu"]) == 0
    res0 = json.loads((quick / "results.json").read_text())
    assert [r["ours"] for r in res0["psnr"]] == pytest.approx([r["ours"] for r in res["psnr"]], abs=1e-4)
    assert "objective" not in res0 and not (quick / "grid.png").exists()
    assert "| **mean** |" in (quick / "quality.md").read_text()


def test_decoder_capacity_probe_smoke(data_dirs, tmp_path, vgg_weights, bench_script):
    """benchmarks/decoder_capacity.py (QUALITY.md's capacity probe): fitting one target lowers its
    objective, from a checkpoint and from a random decoder, and the JSON holds the curve and the
    optimisation-mode figures of the same target."""
    import json

    ck = _tiny_checkpoint(data_dirs, tmp_path, vgg_weights)
    probe = bench_script("decoder_capacity")
    c, s = data_dirs
    common = ["--content-dir", str(c), "--style-dir", str(s), "--vgg-weights", str(vgg_weights), "--size", "32",
              "--iters", "12", "--every", "4", "--opt-iters", "2", "4", "--device", "cpu"]
    for init, extra in ((str(ck), []), ("scratch", ["--split-from", str(ck), "--width", "2", "--lr", "1e-3"])):
        out = tmp_path / f"probe_{len(extra)}.json"
        assert probe.main(["--init", init, *extra, *common, "--out", str(out)]) == 0
        res = json.loads(out.read_text())
        assert [it for it, _ in res["curve"]] == [0, 4, 8, 12]
        assert res["curve"][-1][1] < res["curve"][0][1], res["curve"]
        assert set(res["optimisation"]) == {"2", "4"}
        assert res["content"] in torch.load(ck, weights_only=True)["split"]["content"]["val"]
    assert res["parameters"] > 2 * 555_075  # twice the width: about 3x the shipped decoder's 555,075 parameters


def test_ust_baseline_reconstructs_a_photo(vgg_weights, bench_script):
    """The rebuilt third-party baseline must invert its encoder well (DESIGN.md: ~23-31 dB at 256 px)."""
    if not (UST_DIR / "vgg_normalised_conv3_1.pth").is_file():
        pytest.skip(f"UST baseline weights not found in {UST_DIR}")
    qr = bench_script("quality_report")
    enc, dec = qr.load_ust(UST_DIR, "cpu")
    x = qr.load(REPO / "styleswap_ext" / "apps" / "assets" / "cat.jpg", 128, "cpu")
    with torch.no_grad():
        assert qr.psnr(dec(enc(x)), x) > 20

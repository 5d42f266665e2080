"""Runs nobody watches (stderr not a terminal: batch jobs, CI logs, nohup): one line per stage on
stderr (styleswap_ext/_util/stages.py), none with -q; on a terminal the progress bars instead."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from styleswap_ext._util import stages as _stages
from styleswap_ext.apps import cli

REPO = Path(__file__).resolve().parents[1]
STAGE = re.compile(r"^styleswap: \d+\.\d s ")


def _stylize(tmp_path, image_files, vgg_weights, *extra):
    """The real command in a process of its own, stderr a pipe."""
    content, style = image_files
    out = tmp_path / "out.png"
    env = {k: v for k, v in os.environ.items() if k != "STYLESWAP_DEBUG"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "styleswap_ext", "stylize", str(content), str(style), "-o", str(out),
                           "--vgg-weights", str(vgg_weights), *extra], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    return proc.stderr, out


@pytest.mark.parametrize("extra, bank, search, last", [
    ([], "the search is chosen per content", "exact", "decoding"),
    (["--search", "approximate", "--method", "optimize", "--iters", "2"], "approximate search", "approximate",
     "optimising the image (2 iterations)"),
])
def test_a_run_into_a_pipe_prints_its_stages(tmp_path, image_files, vgg_weights, extra, bank, search, last):
    err, out = _stylize(tmp_path, image_files, vgg_weights, *extra)
    lines = err.splitlines()
    stages = [STAGE.sub("", line) for line in lines if STAGE.match(line)]
    assert stages == ["loaded the style images and the models",
                      f"encoding 1 style into the patch bank ({bank})",
                      "encoding the content (48x36 px)",
                      f"swapping the patches ({search} search)",
                      last], err
    assert re.fullmatch(rf"wrote {re.escape(str(out))} in \d+\.\d s", lines[-1]), err
    assert "\r" not in err  # no progress bar


def test_quiet_prints_nothing(tmp_path, image_files, vgg_weights):
    err, _ = _stylize(tmp_path, image_files, vgg_weights, "-q")
    assert err == ""


def test_a_terminal_gets_the_bars_not_the_stages(monkeypatch, capsys, image_files, vgg_weights, tmp_path):
    content, style = image_files
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli.main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"),
                     "--vgg-weights", str(vgg_weights)]) == 0
    err = capsys.readouterr().err
    assert not any(STAGE.match(line) for line in err.splitlines()), err
    assert err.strip().splitlines()[-1] == f"wrote {tmp_path / 'o.png'}"  # no time: the bars showed it
    assert not _stages._state["on"]  # the run's stage printing ends with it

"""The command line answers --help, --version and usage errors without importing torch (which
takes seconds): the parser and the argument checks need only the standard library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs the CLI in a fresh interpreter, then reports whether torch got imported.
PROBE = """
import sys
from styleswap_ext.apps import cli
rc = cli.main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.write(f"\\nRC={rc} TORCH={'torch' in sys.modules}\\n")
"""


def _run(*argv):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)
    tail = proc.stderr.strip().splitlines()[-1]
    return tail, proc.stdout, proc.stderr


@pytest.mark.parametrize("argv, rc", [
    (["--help"], 0),
    (["--version"], 0),
    (["stylize", "--help"], 0),
    (["video", "--help"], 0),
    (["weights", "--help"], 0),
    (["stylize", "a.jpg"], 2),                                          # argparse: missing -o
    (["stylize", "a.jpg", "b.jpg", "-o", "x.png", "--stride", "4"], 2),  # checked after parsing
    (["stylize", "a.jpg", "b.jpg", "-o", "x.png", "--style-weights", "1", "2"], 2),
    (["nonsense"], 2),
])
def test_no_torch_before_the_arguments_are_checked(argv, rc):
    tail, out, err = _run(*argv)
    assert tail == f"RC={rc} TORCH=False", (out, err)
    if rc == 2:
        assert err.startswith("styleswap: error: ")


def test_version_is_the_package_version():
    import styleswap_ext

    tail, out, _ = _run("--version")
    assert out.strip() == f"styleswap {styleswap_ext.__version__}"


def test_importing_the_package_does_not_import_torch():
    code = "import sys, styleswap_ext; print(styleswap_ext.__version__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.split() == [__import__("styleswap_ext").__version__, "False"]


def test_public_names_load_on_first_use():
    code = ("import sys, styleswap_ext as ss\n"
            "from styleswap_ext import PatchBank, stylize\n"
            "assert 'torch' in sys.modules and callable(ss.style_swap) and isinstance(ss.CUDA_BUILT, bool)\n"
            "import torch\n"
            "assert hasattr(torch.ops.styleswap, 'style_swap')\n"
            "assert sorted(ss.__all__) == sorted(n for n in dir(ss) if n in ss.__all__)\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize("torch_first", [True, False])
def test_ops_register_on_import_when_torch_is_there(torch_first):
    """A PyTorch program (torch imported first) gets torch.ops.styleswap.* from a bare
    ``import styleswap_ext``, as with torchvision; without torch the import stays light."""
    code = ("import torch\nimport styleswap_ext\n" if torch_first else "import styleswap_ext\nimport torch\n") + \
        "print(hasattr(torch.ops.styleswap, 'match_patches'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(torch_first)

"""The package's folders are its layers, and imports run only downward (issue 42):

    apps (cli, studio) -> pipeline -> models -> ops -> _util (and the compiled _C)

A module may import its own folder and any folder below it, never one above it (models may use ops,
ops never models; nothing imports apps). The check reads every ``import`` / ``from ... import`` in
every module with ``ast`` -- the ones inside functions too, and ``importlib.import_module("...")``
with a literal name -- so a lazy import cannot hide an upward one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "styleswap_ext"

# folder (or top-level module) -> its height; a module may import the same or a lower height, and its own
# folder. Every entry of styleswap_ext/ must be here (a new folder says where it stands).
LAYERS = {"_C": 0, "_util": 0, "ops": 1, "models": 2, "pipeline": 3, "apps": 4}
ROOT_FILES = {"__init__.py", "__main__.py"}  # the package itself: loads the layers lazily, may import any

# the public names before the move into folders (captured from main at 453432a)
PUBLIC_ALL = ["CUDA_BUILT", "PatchBank", "StyleSwap", "match_patches", "style_swap", "stylize"]
PUBLIC_DIR = ["CUDA_BUILT", "PatchBank", "StyleSwap", "match_patches", "style_swap", "stylize"]
PUBLIC_DIR_TORCH_FIRST = PUBLIC_DIR + ["ops"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _exists(dotted: str) -> bool:
    """Whether styleswap_ext.<...> is a module or package of the tree (or the compiled library)."""
    rel = Path(*dotted.split("."))
    return ((ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()
            or dotted == "styleswap_ext._C")


def _imports(path: Path):
    """(line, imported module) for every import of a styleswap_ext module in ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for a in node.names:  # `from . import ops` imports the module styleswap_ext.ops
                full = f"{base}.{a.name}"
                yield node.lineno, full if _exists(full) else base
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            target = node.args[0].value
            if target.startswith("."):
                dots = len(target) - len(target.lstrip("."))
                base = package.split(".")
                target = ".".join(base[: len(base) - (dots - 1)] + [target.lstrip(".")])
            yield node.lineno, target


def _layer(dotted: str):
    parts = dotted.split(".")
    if parts[0] != "styleswap_ext":
        return None  # not ours: torch, numpy, the standard library
    if len(parts) == 1:
        return "styleswap_ext"  # the package itself (``from .. import __version__``)
    return parts[1]


def upward_imports(pkg: Path = PKG):
    """'file:line imports X (layer, above layer)' for every import that runs up or into an unknown layer."""
    bad = []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg)
        if len(rel.parts) == 1 and rel.name in ROOT_FILES:
            continue
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for line, target in _imports(path):
            layer = _layer(target)
            if layer is None or layer == own or layer == "styleswap_ext":
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if own not in LAYERS or layer not in LAYERS:
                bad.append(f"{where} imports {target}: {own if own not in LAYERS else layer} is no known layer")
            elif LAYERS[layer] >= LAYERS[own]:
                bad.append(f"{where} imports {target} ({layer}, not below {own})")
    return bad


def test_imports_run_only_downward():
    bad = upward_imports()
    assert not bad, "imports that run up or sideways:\n" + "\n".join(bad)


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    """The check is not blind: a copy of the package with one lazy upward import fails, naming the line."""
    import shutil

    fake = tmp_path / "styleswap_ext"
    shutil.copytree(PKG, fake, ignore=shutil.ignore_patterns("*.so", "__pycache__", "assets", "weights"))
    swap = fake / "ops" / "swap.py"
    swap.write_text(swap.read_text(encoding="utf-8") + "\n\ndef _oops():\n    from ..pipeline import masks\n",
                    encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    bad = upward_imports(fake)
    n = len(swap.read_text(encoding="utf-8").splitlines())
    assert bad == [f"styleswap_ext/ops/swap.py:{n} imports styleswap_ext.pipeline.masks (pipeline, not below ops)"]


def test_top_level_is_the_layers():
    """Every entry of styleswap_ext/ is a layer or the package's own files (the data folders live in the layer
    that finds them: apps/assets, models/weights), at most 8 (issue 42); each layer folder's __init__ says
    what lives there and what it may import."""
    entries = {p.name for p in PKG.iterdir() if p.name != "__pycache__" and not p.name.endswith(".so")}
    assert entries <= set(LAYERS) | ROOT_FILES, entries - (set(LAYERS) | ROOT_FILES)
    assert len(entries) <= 8, sorted(entries)
    for layer in set(LAYERS) - {"_C"}:
        doc = ast.get_docstring(ast.parse((PKG / layer / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "import" in doc.split("\n\n")[0], f"styleswap_ext/{layer}/__init__.py: no docstring saying what it may import"


def _public_names(torch_first: bool):
    code = ("import sys\n" + ("import torch\n" if torch_first else "") +
            "import styleswap_ext as ss\n"
            "print(sorted(ss.__all__)); print(sorted(n for n in dir(ss) if not n.startswith('_') and n not in ('importlib', 'sys')))\n"
            "print(all(getattr(ss, n) is not None for n in ss.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         timeout=300).stdout.splitlines()
    return [ast.literal_eval(line) for line in out]


@pytest.mark.parametrize("torch_first", [False, True])
def test_public_api_is_the_one_before_the_folders(torch_first):
    all_names, dir_names, resolved = _public_names(torch_first)
    assert all_names == sorted(PUBLIC_ALL)
    assert dir_names == sorted(PUBLIC_DIR_TORCH_FIRST if torch_first else PUBLIC_DIR)
    assert resolved


def test_old_import_paths_the_docs_name_still_work():
    import styleswap_ext.models as models
    import styleswap_ext.ops as ops
    import styleswap_ext.pipeline as pipeline

    assert callable(models.load_encoder) and callable(models.load_decoder) and models.Decoder
    assert callable(pipeline.optimize_image) and callable(pipeline.stylize) and pipeline.StyleBank
    assert callable(ops.build_index) and ops.DEFAULT_PROBES > 0


def test_every_folder_is_a_package_of_the_wheel():
    """pyproject lists the packages by hand (setuptools): a folder of styleswap_ext missing there would be
    missing from an installed styleswap."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    folders = {".".join(p.relative_to(ROOT).parts) for p in PKG.rglob("*")
               if p.is_dir() and p.name != "__pycache__" and any(p.iterdir())}
    assert listed == folders | {"styleswap_ext"}

"""Output paths checked before any work, so that a run never ends by losing or overwriting a file.

Every check here runs before an image is decoded or a model is loaded, and raises ``ValueError``
with one line that names the paths involved (the CLI turns it into exit code 2):

* :func:`check_not_an_input`: the output is not one of the inputs, compared as files
  (``os.path.samefile``: the same file through a symlink, a hard link, ``./a.png`` or ``A.PNG`` on
  a case-insensitive file system all count), so a typo in ``-o`` never replaces a photo;
* :func:`check_writable_dir`: the folder that will receive the output accepts a new file (a trial
  file is created and removed: this also catches read-only mounts, which permission bits do not
  show, and it names the real output instead of the hidden temporary file of the atomic write);
* :func:`check_distinct_outputs`: in directory mode no two inputs map to one output name
  (``x.jpg`` and ``x.JPG`` both give ``x_stylized.jpg``); the run is refused naming both, rather
  than one result silently replacing the other.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence, Tuple


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def check_not_an_input(output, inputs: Iterable, what: str = "output") -> None:
    """ValueError if ``output`` is the same file as one of ``inputs``."""
    out = Path(output)
    if not out.exists():
        return
    for inp in inputs:
        if _same_file(out, Path(inp)):
            same = "" if str(out) == str(inp) else f" (the same file as {str(inp)!r})"
            raise ValueError(f"{what} {str(out)!r} is an input{same}: writing it would destroy that input; "
                             "choose another output path")


def check_writable_dir(directory, output=None) -> None:
    """ValueError unless a new file can be created in ``directory`` (named as the folder of ``output``)."""
    directory = Path(directory)
    what = f"cannot write {str(output)!r}: its folder {str(directory)!r}" if output is not None \
        else f"the output folder {str(directory)!r}"
    try:
        fd, trial = tempfile.mkstemp(prefix=".styleswap-write-check.", dir=directory)
    except OSError as e:
        raise ValueError(f"{what} is not writable ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(trial)


def nearest_existing_dir(path) -> Path:
    """``path`` itself if it is a directory, else its closest existing ancestor (where a
    ``mkdir(parents=True)`` of ``path`` would create the first new folder)."""
    p = Path(os.path.abspath(path))
    while not p.is_dir() and p != p.parent:
        p = p.parent
    return p


def check_distinct_outputs(jobs: Sequence[Tuple[Path, Path]]) -> None:
    """ValueError naming both inputs if two jobs ``(input, output)`` would write one output file.

    Names are compared case-insensitively: on a case-insensitive file system (macOS, Windows)
    ``X_stylized.jpg`` and ``x_stylized.jpg`` are one file too."""
    seen = {}
    for src, dst in jobs:
        key = os.path.normcase(os.path.abspath(dst)).casefold()
        if key in seen:
            raise ValueError(f"{str(seen[key])!r} and {str(src)!r} would both be written to {str(dst)!r}: "
                             "rename one of them (or stylise them separately)")
        seen[key] = src


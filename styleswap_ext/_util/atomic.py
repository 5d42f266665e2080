"""Atomic file writes: a failed or interrupted write never leaves a partial file at the target."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

# write errors that are about the target's file system, not about what is being written: an OSError
# with one of these and no file name is reported as the target's
_TARGET_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def _new_file_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would give: the existing file's, else 0666 minus the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _about_the_target(exc: OSError, tmp) -> bool:
    """Whether ``exc`` is about writing the temporary file: it names it (or creating it failed: ``tmp``
    is None), or it names no file and is a full disk, a read-only file system, ..."""
    return tmp is None or (exc.filename is not None and str(exc.filename) == str(tmp)) or \
        (exc.filename is None and exc.errno in _TARGET_ERRNOS)


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path``, on any
    error (or KeyboardInterrupt / stop signal, see ``_signals``) it is removed. The temporary name
    ends in ``path``'s suffix, for writers that pick a format from the extension. An OSError about
    the temporary file is raised naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, _new_file_mode(path))  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(e, OSError) and _about_the_target(e, tmp):
            # the target's problem: name the target, which the user knows, not .NAME.xxxx.part.EXT (a new
            # OSError, of the errno's subclass: some, e.g. PyAV's, have a read-only filename)
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def torch_save_atomic(obj, path) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_path`. torch writes through a file object here:
    given a path, a full disk comes out of its zip writer as "unexpected pos 704 vs 598"; through a
    file object it is the OSError (ENOSPC) that it is."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)

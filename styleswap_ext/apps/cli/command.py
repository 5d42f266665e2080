"""The entry point of the ``styleswap`` console script: parse and check the arguments, then run the command
with warnings as one line each and SIGTERM/SIGHUP handled as Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import List, Optional

from ..._util import stages as _stages
from .arguments import PROG, UsageError, _say_error, build_parser
from .runners import _describe, _run_demo, _run_stylize, _run_train, _run_video, _run_weights

def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``styleswap`` console script; returns the exit code."""
    # Parse and check the arguments before anything imports torch (~2 s): --help and usage errors
    # answer at once (tests/test_cli_startup.py).
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(train_options="train-decoder" in words)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed)
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    from ..._util.signals import Stopped, stop_signals_raise

    warnings_shown = contextlib.ExitStack()
    warnings_shown.enter_context(_warnings_as_lines(getattr(args, "quiet", False)))
    warnings_shown.enter_context(stop_signals_raise())  # SIGTERM/SIGHUP clean up as Ctrl-C does
    # progress bars only where someone watches them: -q, or stderr not a terminal (a log), turns them off
    args.progress = not getattr(args, "quiet", False) and sys.stderr.isatty()
    # there, one line per stage instead (styleswap_ext/_util/stages.py); a video's frames get none each
    if args.command in ("stylize", "video", "demo") and not getattr(args, "quiet", False) and not sys.stderr.isatty():
        _stages.enable(detail=args.command != "video")
    warnings_shown.callback(_stages.disable)
    try:
        if args.command == "demo":
            return _run_demo(args)
        if args.command == "train-decoder":
            return _run_train(args)
        if args.command == "weights":
            return _run_weights(args)
        if args.command == "video":
            return _run_video(args)
        if args.command == "studio":
            from ..studio import run as _run_studio

            return _run_studio(args)
        return _run_stylize(args)
    except UsageError as e:
        _say_error(str(e))
        return 2
    except Stopped as e:  # SIGTERM / SIGHUP: temporary files are gone, the usual 128 + signal exit code
        _say_error(f"stopped by {e.name}")
        return 128 + e.signum
    except KeyboardInterrupt:
        _say_error("interrupted")
        return 130
    except Exception as e:
        if os.environ.get("STYLESWAP_DEBUG"):
            raise
        _say_error(_describe(e))
        return 1
    finally:
        warnings_shown.close()


@contextlib.contextmanager
def _warnings_as_lines(quiet: bool):
    """Python warnings raised during a run (e.g. Pillow's DecompressionBombWarning for a very large
    image, possibly from the background loader thread) as one ``styleswap: warning:`` line each,
    none with -q; the previous warning settings come back afterwards."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        sys.stderr.write(f"{PROG}: warning: {text}\n")
        sys.stderr.flush()

    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        warnings.showwarning = show
        yield


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

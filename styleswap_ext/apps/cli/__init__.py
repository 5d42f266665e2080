"""The ``styleswap`` command line (also ``python -m styleswap_ext``): its arguments (arguments), what each
command runs (runners) and the entry point (command). Imports argparse only until the arguments are checked.

    styleswap stylize CONTENT STYLE [STYLE ...] -o OUT [options]
    styleswap video IN STYLE [STYLE ...] -o OUT [options]
    styleswap demo [-o styleswap-demo.png]
    styleswap train-decoder --content-dir DIR --style-dir DIR --out CKPT [options]   (styleswap_ext/pipeline/training/)
    styleswap studio [--host H] [--port P]   (a local web page: styleswap_ext/apps/studio, docs/studio.md)

``stylize DIR`` and ``video FRAMES_DIR`` launched by ``torchrun --nproc_per_node N`` shard the
files across the processes (see :mod:`styleswap_ext.pipeline.distributed`).

Errors print exactly one line ``styleswap: error: ...`` on stderr, never a traceback
(set ``STYLESWAP_DEBUG=1`` to get one): exit code 2 for bad arguments (argparse's convention),
1 for failures while running (unreadable image, missing weights, out of memory, ...). Outputs are
written atomically, so a failed run leaves no output file.
"""

from .arguments import ASSETS, DEMO_CONTENT, DEMO_SIZE, DEMO_STYLE, PROG, UsageError, build_parser
from .command import main

__all__ = ["main", "build_parser", "UsageError", "PROG"]

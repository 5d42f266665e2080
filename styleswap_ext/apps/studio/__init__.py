"""``styleswap studio``: a local web page for stylising images (Gradio), offline (docs/studio.md).

This module is imported by the command line's parser, so it imports neither Gradio nor torch:
:mod:`.server` (started by :func:`run`) does. ``pip install '.[studio]'`` adds Gradio.
"""

from __future__ import annotations

__all__ = ["add_arguments", "run"]


def add_arguments(p, int_at_least, float_in) -> None:
    """The options of ``styleswap studio`` (``cli.build_parser`` passes its argument types)."""
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; another address lets "
                        "other machines in, and is warned about)")
    p.add_argument("--port", type=int_at_least(1), default=None,
                   help="port (default: the first free one from 7860)")
    p.add_argument("--concurrency", type=int_at_least(1), default=1,
                   help="jobs run at once (default 1; the others wait in the queue, their position shown)")
    p.add_argument("--queue-size", type=int_at_least(1), default=16,
                   help="requests that may wait in the queue (default 16; more are refused)")
    p.add_argument("--max-upload-mb", type=float_in(0.0, lo_open=True), default=50.0,
                   help="largest upload in MB (default 50)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: CUDA if available")
    p.add_argument("--vgg-weights", metavar="PATH", help="VGG-19 weights (as for stylize)")
    p.add_argument("--decoder-weights", metavar="PATH", help="trained decoder weights (default: the installed ones)")


def run(args) -> int:
    """Start the server and serve until Ctrl-C (``cli.main``'s ``studio`` command)."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise RuntimeError("styleswap studio needs Gradio: pip install 'styleswap[studio]' "
                           "(or pip install 'gradio>=6,<7')") from None
    from .server import serve

    return serve(host=args.host, port=args.port, workers=args.concurrency, queue_size=args.queue_size,
                 max_upload_mb=args.max_upload_mb, device=args.device, vgg_weights=args.vgg_weights,
                 decoder_weights=args.decoder_weights)

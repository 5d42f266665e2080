"""Start the studio: a local Gradio server, offline, with its uploads in a temporary folder that is
removed when it stops (Ctrl-C or SIGTERM).

Offline means: no share link, Gradio's analytics and update check off (``GRADIO_ANALYTICS_ENABLED``
and Hugging Face's telemetry, set before Gradio is imported), the theme's fonts served by the server
itself (Gradio's Default theme ships them; ``tests/test_studio_browser.py`` records every request the
page makes), server-side rendering off (it would start a Node process).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

FIRST_PORT = 7860
PORTS_TRIED = 100


def _offline_environment(upload_dir: Path) -> None:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["GRADIO_TEMP_DIR"] = str(upload_dir)  # uploads and results: removed when the server stops


def free_port(host: str, first: int = FIRST_PORT, count: int = PORTS_TRIED) -> int:
    """The first port from ``first`` that ``host`` lets us bind."""
    import socket

    for port in range(first, first + count):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {first}-{first + count - 1} on {host}: give one with --port")


class Server:
    """The running studio: ``url``, and :meth:`close` (also on Ctrl-C / SIGTERM in :func:`serve`)."""

    def __init__(self, *, host: str = "127.0.0.1", port: Optional[int] = None, workers: int = 1,
                 queue_size: int = 16, max_upload_mb: float = 50, device: str = "auto",
                 vgg_weights: Optional[str] = None, decoder_weights: Optional[str] = None, warm_up: bool = True):
        self.tmp = Path(tempfile.mkdtemp(prefix="styleswap-studio-")).resolve()
        try:
            _offline_environment(self.tmp)
            import gradio as gr

            from .engine import Engine
            from .page import CSS, Studio, build

            self.engine = Engine(upload_root=self.tmp, results_root=self.tmp / "results", device=device,
                                 vgg_weights=vgg_weights, decoder_weights=decoder_weights)
            self.studio = Studio(self.engine, workers=workers)
            self.demo = build(self.studio)
            self.demo.queue(default_concurrency_limit=workers, max_size=queue_size)
            port = free_port(host) if port is None else port
            theme = gr.themes.Default()  # its fonts are Gradio's own files, served locally
            _, self.url, _ = self.demo.launch(
                server_name=host, server_port=port, share=False, prevent_thread_lock=True, quiet=True,
                inbrowser=False, show_error=False, max_file_size=int(max_upload_mb * 1024 * 1024),
                ssr_mode=False, allowed_paths=[], theme=theme, css=CSS, footer_links=["api"],
                enable_monitoring=False, mcp_server=False, pwa=False)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.url = self.url.rstrip("/") + "/"
        if warm_up:  # load the models now, not on the first request
            threading.Thread(target=self._warm_up, name="studio-warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        try:
            self.engine.warm_up()
        except Exception as e:  # the first request reports it properly
            sys.stderr.write(f"styleswap: warning: could not load the models yet: {' '.join(str(e).split())}\n")

    def close(self) -> None:
        try:
            self.demo.close()
            self.studio.pool.shutdown(wait=False, cancel_futures=True)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def serve(**kw) -> int:
    """Run until Ctrl-C or SIGTERM; the address is printed on stdout once the server answers."""
    host = kw.get("host", "127.0.0.1")
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(f"styleswap: warning: listening on {host}: other machines can reach the studio "
                         "(it has no login)\n")
    server = Server(**kw)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"styleswap studio: {server.url}  (Ctrl-C stops it)", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
    print("styleswap studio: stopped", flush=True)
    return 0

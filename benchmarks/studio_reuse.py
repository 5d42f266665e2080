"""The studio's second request against the command line, same settings, measured in one run.

Starts ``styleswap studio`` on 127.0.0.1, sends a request (models load, the style bank is built),
then the same request again (the models and the bank are reused: only the content's encoding, the
swap and the decode are left) and times it as a client sees it; then times ``styleswap stylize`` with
the same settings (a new process: start-up, models, bank, swap, decode). Prints both and their ratio
(docs/studio.md; the issue's bar: the second request <= 0.5x the command line), and the server's peak
memory.

    python benchmarks/studio_reuse.py [--content-size 512] [--runs 3] [--vgg-weights PATH]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "styleswap_ext" / "assets"
DEFAULT_VGG = REPO.parent / "shared" / "weights" / "vgg19_conv1_1-conv3_1_torchvision.pth"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--content", default=str(ASSETS / "cat.jpg"))
    ap.add_argument("--style", default=str(ASSETS / "starry_night.jpg"))
    ap.add_argument("--content-size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3, help="timed repetitions of each (the median is compared)")
    ap.add_argument("--vgg-weights", default=os.environ.get("STYLESWAP_VGG19_WEIGHTS") or str(DEFAULT_VGG))
    args = ap.parse_args()
    from gradio_client import Client, handle_file

    env = dict(os.environ, PYTHONPATH=str(REPO), STYLESWAP_VGG19_WEIGHTS=args.vgg_weights)
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([sys.executable, "-m", "styleswap_ext", "studio", "--device", "cpu"], env=env,
                                  stdout=subprocess.PIPE, text=True, cwd=tmp)
        try:
            url = server.stdout.readline().split()[2]
            client = Client(url, verbose=False)

            def request():
                t = time.perf_counter()
                client.predict(handle_file(args.content), handle_file(args.style), content_size=args.content_size,
                               api_name="/stylize")
                return time.perf_counter() - t

            first = request()
            again = [request() for _ in range(args.runs)]
            peak = _status_kib(server.pid, "VmHWM")
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(60)
        cli = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "styleswap_ext", "stylize", args.content, args.style, "-o",
                            str(Path(tmp) / "out.png"), "--content-size", str(args.content_size), "--device", "cpu",
                            "-q"], env=env, check=True)
            cli.append(time.perf_counter() - t)
    a, c = statistics.median(again), statistics.median(cli)
    print(f"content {Path(args.content).name} at {args.content_size} px, style {Path(args.style).name}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"studio first request   {first:6.2f} s (models, style bank)")
    print(f"studio same style again {a:6.2f} s  median of {', '.join(f'{x:.2f}' for x in again)}")
    print(f"styleswap stylize      {c:6.2f} s  median of {', '.join(f'{x:.2f}' for x in cli)}")
    print(f"ratio {a / c:.2f}x (bar: <= 0.5x); server peak RSS {peak / 1024:.0f} MiB")
    return 0


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

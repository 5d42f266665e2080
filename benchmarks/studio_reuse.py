"""The studio's second request against the command line, same settings, measured in one run.

Starts ``styleswap studio`` on 127.0.0.1, sends a request (models load, the style bank is built),
then the same content and style again with alpha 1, 0.8, 0.6 (models, bank and the last swap kept:
the content's encoding, the blend and the decode are left), then the same style with another content
(the mirrored photo and the photo in turn: models and bank kept, the swap made anew), each timed as
a client sees it; then ``styleswap stylize`` with the same settings (a new process: start-up, models,
bank, swap, decode). Prints the medians and their ratios (docs/studio.md; the issue's bar: a second
request with the same style <= 0.5x the command line), and the server's peak memory.

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
ASSETS = REPO / "styleswap_ext" / "apps" / "assets"
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

            from PIL import Image, ImageOps

            flipped = Path(tmp) / ("flipped-" + Path(args.content).name)  # another content, the same size
            ImageOps.mirror(Image.open(args.content)).save(flipped)

            def request(content, alpha=1.0):
                t = time.perf_counter()
                client.predict(handle_file(content), handle_file(args.style), content_size=args.content_size,
                               alpha=alpha, api_name="/stylize")
                return time.perf_counter() - t

            first = request(args.content)
            again = [request(args.content, alpha) for alpha in (1.0, 0.8, 0.6)[:args.runs]]  # swap kept
            other = []  # the same style, a new content each time (alternating): the bank is reused, not the swap
            for i in range(args.runs):
                other.append(request(flipped if i % 2 == 0 else args.content))
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
    a, o, c = statistics.median(again), statistics.median(other), statistics.median(cli)
    print(f"content {Path(args.content).name} at {args.content_size} px, style {Path(args.style).name}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"studio first request   {first:6.2f} s (models, style bank)")
    print(f"studio, same content and style (alpha 1, 0.8, 0.6: bank and swap kept) {a:6.2f} s  "
          f"median of {', '.join(f'{x:.2f}' for x in again)}  -> {a / c:.2f}x the command line")
    print(f"studio, same style, another content (bank kept)                    {o:6.2f} s  "
          f"median of {', '.join(f'{x:.2f}' for x in other)}  -> {o / c:.2f}x the command line")
    print(f"styleswap stylize, same settings                                   {c:6.2f} s  "
          f"median of {', '.join(f'{x:.2f}' for x in cli)}")
    print(f"(bar: <= 0.5x) server peak RSS {peak / 1024:.0f} MiB")
    return 0


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

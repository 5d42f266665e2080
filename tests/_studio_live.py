"""A live ``styleswap studio`` for the tests: started as the user starts it (a subprocess on
127.0.0.1), stopped with Ctrl-C (SIGINT). Shared by test_studio.py and test_studio_browser.py."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from cli_process import as_in_a_terminal

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "styleswap_ext" / "apps" / "assets"


@dataclasses.dataclass
class Live:
    proc: subprocess.Popen
    url: str
    started_s: float  # from the process start to the first page served
    started_cpu_s: float  # the CPU time the server had used by then
    load: float  # the machine's 1-minute load average then
    tmp: Path  # the server's TMPDIR: its upload folder lives (and must die) here
    lines: list  # what it printed on stdout
    reader: threading.Thread  # reads stdout into lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp: Path, vgg_weights: Path, *args: str, timeout: float = 120) -> Live:
    env = dict(os.environ, PYTHONPATH=str(REPO), STYLESWAP_VGG19_WEIGHTS=str(vgg_weights), TMPDIR=str(tmp),
               STYLESWAP_CACHE_DIR=str(tmp / "cache"))
    env.pop("GRADIO_SERVER_NAME", None)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "styleswap_ext", "studio", "--port", str(free_port()), *args],
                            stdout=subprocess.PIPE, stderr=(tmp / "stderr.log").open("w"), text=True, env=env,
                            cwd=tmp,  # stderr to a file: a pipe nobody reads would fill up and block the server
                            preexec_fn=as_in_a_terminal)  # the Ctrl-C that stops it is not ignored
    lines: list = []
    got = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            got.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not got.wait(timeout):
        proc.kill()
        raise RuntimeError(f"styleswap studio printed nothing in {timeout} s: {(tmp / 'stderr.log').read_text()}")
    url = lines[0].split()[2]
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            if time.monotonic() - t0 > timeout or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.1)
    return Live(proc, url, time.monotonic() - t0, cpu_seconds(proc.pid), os.getloadavg()[0], tmp, lines,
                reader)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(live: Live):
    """Ctrl-C; -> (exit code, stdout after the address, stderr)."""
    live.proc.send_signal(signal.SIGINT)
    try:
        live.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        live.proc.kill()
        raise
    live.reader.join(10)
    return live.proc.returncode, "".join(live.lines), (live.tmp / "stderr.log").read_text()


def listening(pid: int) -> set:
    """(address, port) of every TCP socket ``pid`` listens on (from /proc: its socket inodes)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            addr, port = cols[1].split(":")
            raw = bytes.fromhex(addr)
            if v6:
                host = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            else:
                host = socket.inet_ntoa(raw[::-1])
            found.add((host, int(port, 16)))
    return found


def status_kib(pid: int, field: str) -> int:
    """A /proc/PID/status figure in KiB, e.g. VmRSS, VmHWM (the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)

"""styleswap_ext/_util/allocator.py: the command line keeps freed memory for reuse where its memory plan
has room, which spares the page faults of mapping every large block afresh."""

import platform
import subprocess
import sys
import textwrap

import pytest

from styleswap_ext._util import allocator

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="mallopt is glibc's (Linux)")

# Runs the encoder (random weights) on a 768 px image three times; prints the page faults of the
# second and third passes, when every buffer it needs has been freed once already.
_PASSES = textwrap.dedent("""
    import resource, sys, torch
    from styleswap_ext._util import allocator
    from styleswap_ext.models.networks import VGGEncoder
    if sys.argv[1] == "keep":
        assert allocator.keep_freed_memory()
    enc = VGGEncoder().eval()
    x = torch.rand(1, 3, 768, 768)
    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        with torch.no_grad():
            enc(x)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults()
    print(faults() + faults())
""")


def _later_pass_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PASSES, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@glibc
def test_kept_memory_spares_the_encoders_page_faults():
    default, kept = _later_pass_faults("default"), _later_pass_faults("keep")
    # measured (2-core AMD EPYC): ~595,000 against ~14,000; each pass maps its activations afresh by default
    assert default > 100_000
    assert kept < default / 5


@glibc
def test_opt_out_keeps_glibc_default():
    out = subprocess.run([sys.executable, "-c", "from styleswap_ext._util import allocator; "
                          "print(allocator.keep_freed_memory())"], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "STYLESWAP_KEEP_FREED_MEMORY": "0"})
    assert out.stdout.strip() == "False"


def test_only_with_room():
    assert allocator.worth_keeping(1 << 30, 2 << 30)
    assert not allocator.worth_keeping(1 << 30, (2 << 30) - 1)
    assert not allocator.worth_keeping(1 << 30, None)  # unknown: glibc's default


@pytest.mark.parametrize("available, kept", [(1 << 40, True), (1 << 20, False)])
def test_stylize_keeps_freed_memory_only_with_room(monkeypatch, tmp_path, available, kept):
    """The command line asks for it when the plan leaves HEADROOM x its estimate free, not otherwise."""
    from PIL import Image

    from styleswap_ext.apps.cli import main, runners
    from styleswap_ext.pipeline import memory_plan

    calls = []
    monkeypatch.setattr(runners.allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(memory_plan, "available_bytes", lambda device: available)
    monkeypatch.setenv("STYLESWAP_NO_MEMORY_CHECK", "1")  # a plan above "available" must not be refused here

    def no_models(*a, **k):  # the run stops here, after the plan and the allocator's choice
        raise RuntimeError("stopped before the models load")

    monkeypatch.setattr(runners, "_load_styles_and_models", no_models)
    for name in ("c.png", "s.png"):
        Image.new("RGB", (64, 48), (120, 80, 40)).save(tmp_path / name)
    rc = main(["stylize", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(tmp_path / "o.png"), "-q",
               "--device", "cpu"])
    assert rc == 1  # the stop above, reported as one line
    assert bool(calls) == kept


@pytest.mark.parametrize("available, kept", [(1 << 40, True), (1 << 20, False)])
def test_video_keeps_freed_memory_from_its_first_frame_only_with_room(monkeypatch, tmp_path, available, kept):
    """A video plans from its first frame (its size is known then) and asks once, with room only."""
    from PIL import Image

    from styleswap_ext.apps.cli import main, runners
    from styleswap_ext.pipeline import memory_plan

    calls = []
    monkeypatch.setattr(runners.allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(memory_plan, "available_bytes", lambda device: available)
    monkeypatch.setenv("STYLESWAP_NO_MEMORY_CHECK", "1")
    # no models: every frame comes back as it is
    monkeypatch.setattr(runners, "_load_styles_and_models", lambda args: (None, None, None))
    monkeypatch.setattr(runners, "_style_bank", lambda *a: None)
    monkeypatch.setattr(runners, "_stylize_one", lambda args, t, *a, **k: t)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 48), (40 * i, 80, 40)).save(frames / f"f{i}.png")
    Image.new("RGB", (64, 48), (1, 2, 3)).save(tmp_path / "s.png")
    rc = main(["video", str(frames), str(tmp_path / "s.png"), "-o", str(tmp_path / "out"), "-q", "--device", "cpu"])
    assert rc == 0 and len(list((tmp_path / "out").iterdir())) == 3
    assert calls == ([1] if kept else [])

"""styleswap studio: the handlers as functions on the bundled images, then the live server on
127.0.0.1 through gradio_client (docs/studio.md). The browser: test_studio_browser.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="styleswap studio needs Gradio: pip install '.[studio]'")

from _studio_live import ASSETS, listening, pixels, psnr, start, status_kib, stop  # noqa: E402

from styleswap_ext.apps import cli  # noqa: E402
from styleswap_ext.pipeline.settings import StylizeSettings  # noqa: E402
from styleswap_ext.apps.studio import regions  # noqa: E402
from styleswap_ext.apps.studio.engine import Cancelled, Engine, Request, StudioError  # noqa: E402

SMALL = dict(content_size=96, style_size=96)


# --- the handlers, as functions ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """The bundled images as uploads (the engine reads only files inside its upload folder)."""
    root = tmp_path_factory.mktemp("uploads")
    for name in ("cat.jpg", "starry_night.jpg"):
        shutil.copy(ASSETS / name, root / name)
    (root / "bad.jpg").write_bytes(b"this is no JPEG")
    # a second style of a clearly other colour: blue and white stripes
    y, x = np.mgrid[0:96, 0:96]
    stripes = np.where(((x + y) // 6 % 2 == 0)[..., None], [20, 40, 220], [235, 235, 250]).astype(np.uint8)
    Image.fromarray(stripes, "RGB").save(root / "stripes.png")
    return root


@pytest.fixture(scope="module")
def engine(uploads, vgg_weights, tmp_path_factory):
    return Engine(upload_root=uploads, results_root=tmp_path_factory.mktemp("results"), device="cpu",
                  vgg_weights=str(vgg_weights))


def _req(uploads, styles=("starry_night.jpg",), **settings):
    return Request(content=str(uploads / "cat.jpg"), styles=[str(uploads / s) for s in styles],
                   content_name="cat.jpg", style_names=list(styles),
                   settings=StylizeSettings(**{**SMALL, **settings}))


def _run_command(command: str, files, cwd: Path) -> np.ndarray:
    """Run the studio's command line (``styleswap stylize ...``) with the named files in ``cwd``."""
    for f in files:
        shutil.copy(f, cwd / Path(f).name)
    words = shlex.split(command)
    assert words[:2] == ["styleswap", "stylize"]
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        assert cli.main(words[1:] + ["-q"]) == 0
    finally:
        os.chdir(old)
    return pixels(cwd / "stylised.png")


def test_a_stylisation_equals_its_command_line_and_reuses_the_bank(engine, uploads, tmp_path):
    stages = []
    first = engine.run(_req(uploads, alpha=0.8), on_stage=lambda s, d, t: stages.append(s))
    assert stages[:2] == ["models", "bank"] and stages[-3:] == ["swap", "decode", "save"]
    assert not first.bank_reused and first.image.size == (96, 72)
    content = pixels(ASSETS / "cat.jpg")
    out = pixels(first.path)
    assert np.abs(out - np.asarray(Image.open(ASSETS / "cat.jpg").resize((96, 72))).astype(float)).mean() > 10
    assert first.command == ("styleswap stylize cat.jpg starry_night.jpg -o stylised.png --alpha 0.8 "
                             "--content-size 96 --style-size 96 --device cpu --vgg-weights " + engine.vgg_weights)
    assert "device cpu" in first.summary and "search exact" in first.summary
    # the same style and bank settings again: the bank is reused, the pixels are the same
    stages.clear()
    second = engine.run(_req(uploads, alpha=0.8), on_stage=lambda s, d, t: stages.append(s))
    assert second.bank_reused and "bank" not in stages
    assert np.array_equal(pixels(second.path), out)
    assert "style bank and swap reused" in second.summary  # the same content too: its swap is kept
    # the command line gives the same picture
    cli_out = _run_command(first.command, [uploads / "cat.jpg", uploads / "starry_night.jpg"], tmp_path)
    assert psnr(cli_out, out) >= 45
    # another alpha reuses the kept swap, and still equals its command line
    third = engine.run(_req(uploads, alpha=0.3))
    assert "style bank and swap reused" in third.summary
    (tmp_path / "stylised.png").unlink()
    assert psnr(_run_command(third.command, [], tmp_path), pixels(third.path)) >= 45
    # another bank-shaping setting builds a new bank
    assert not engine.run(_req(uploads, patch_size=5, stride=2)).bank_reused
    assert content.shape[2] == 3


def test_painted_regions_equal_the_command_line_with_masks(engine, uploads, tmp_path):
    labels = np.zeros((72, 96), np.int64)
    labels[:, 48:] = 1  # right half: style 2 (the blue stripes)
    out = engine.run(_req(uploads, styles=("starry_night.jpg", "stripes.png")) | _regions(labels))
    names = sorted(p.name for p in out.files)
    assert names == ["content-mask.png", "style1-mask.png", "style2-mask.png", "stylised.png"]
    assert "--content-mask content-mask.png --style-mask style1-mask.png style2-mask.png" in out.command
    img = pixels(out.path)
    left, right = img[:, :40].mean((0, 1)), img[:, 56:].mean((0, 1))
    assert right[2] - right[0] > 40 and left[2] - left[0] < right[2] - right[0] - 40  # blue only on the right
    cli_out = _run_command(out.command, [uploads / "cat.jpg", uploads / "starry_night.jpg", uploads / "stripes.png",
                                         *out.files[1:]], tmp_path)
    assert psnr(cli_out, img) >= 45


def _regions(labels):
    class _With:  # Request | regions -> the request with painted regions
        def __ror__(self, req):
            req.regions = labels
            return req
    return _With()


def test_painted_layers_become_labels():
    layer = np.zeros((4, 6, 4), np.uint8)
    layer[:, 3:] = [0, 130, 200, 255]  # blue: style 2
    layer[0, 3] = [0, 110, 180, 100]  # too transparent: not painted
    layer[1, 3] = [20, 120, 190, 200]  # an anti-aliased edge: nearest colour
    over = np.zeros_like(layer)
    over[3, :2] = [60, 180, 75, 255]  # green (style 3) on a later layer
    labels = regions.painted_labels([layer, over], 3)
    assert labels.tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [2, 2, 0, 1, 1, 1]]
    assert regions.painted_labels([np.zeros((4, 6, 4), np.uint8)], 2) is None
    assert regions.painted_labels([layer], 1).max() == 0  # one style: every colour is style 1
    assert regions.painted_labels([layer], 2, size=(12, 8)).shape == (8, 12)


def test_cancel_stops_at_the_next_step(engine, uploads):
    steps = []

    def on_stage(stage, done, total):
        if stage == "optimize":
            steps.append(done)

    with pytest.raises(Cancelled):
        engine.run(_req(uploads, method="optimize", iters=200), on_stage=on_stage, cancelled=lambda: len(steps) > 3)
    assert steps == [0, 1, 2, 3]  # stopped before step 4 of 200


@pytest.mark.parametrize("change, message", [
    (dict(content="bad.jpg"), "content (bad.jpg): not an image file"),
    (dict(styles=["bad.jpg"]), "style 1 (bad.jpg): not an image file"),
    (dict(content="/etc/hostname"), "content: not an uploaded file"),
    (dict(content="../../etc/hostname"), "content: not an uploaded file"),
    (dict(settings=StylizeSettings(stride=4)), "stride (4) must not exceed patch_size (3)"),
    (dict(settings=StylizeSettings(content_size=10 ** 6)), "would need about"),
])
def test_errors_are_one_line_for_the_page(engine, uploads, change, message):
    req = _req(uploads)
    for k, v in change.items():
        if k == "content":
            v = v if v.startswith("/") else str(uploads / v)
            req.content_name = Path(v).name
        if k == "styles":
            req.style_names = list(v)
            v = [str(uploads / s) for s in v]
        setattr(req, k, v)
    with pytest.raises(StudioError) as e:
        engine.run(req)
    text = str(e.value)
    assert message in text and "\n" not in text and str(uploads) not in text


def test_page_handler_and_gallery_as_functions(engine, uploads):
    from styleswap_ext.apps.studio.page import Studio, page_settings, parse_weights

    studio = Studio(engine)
    cat, starry = str(uploads / "cat.jpg"), str(uploads / "starry_night.jpg")
    settings = ["decoder", 100, 1.0, False, 3, 1, 96, 96, "auto"]
    err, result, compare, files, info, command = asyncio.run(
        studio.stylize_page(cat, [(starry, None)], "", None, *settings, progress=None))
    assert err == "" and Path(result).is_file() and compare == (cat, result) and files == [result]
    assert command.startswith("styleswap stylize cat.jpg starry_night.jpg -o stylised.png --content-size 96")
    err, result, *_ = asyncio.run(studio.stylize_page(str(uploads / "bad.jpg"), [(starry, None)], "", None, *settings,
                                                      progress=None))
    assert err == "**Error:** content (bad.jpg): not an image file (or an unsupported format)" and result is None
    err, *_ = asyncio.run(studio.stylize_page(cat, [(starry, None)], "1 x", None, *settings, progress=None))
    assert "style weights must be numbers" in err

    async def gallery():
        return [out async for out in studio.gallery(cat, None, *settings, progress=None)]

    (items, error), = asyncio.run(gallery())  # no styles given: every bundled style (one)
    assert error == "" and len(items) == 1 and items[0][1].startswith("starry_night.jpg")
    assert page_settings("decoder+optimize", 20, 0.5, True, 3, 1, 0, None, "auto", "1 2") == StylizeSettings(
        method="optimize", init="decoder", iters=20, alpha=0.5, preserve_color=True, style_weights=(1.0, 2.0))
    assert parse_weights(" 1, 0.5 ") == (1.0, 0.5) and parse_weights("") is None


def test_page_image_inputs_pass_uploads_on_untouched(engine, uploads, tmp_path):
    """Content uploads reach the engine as the files they are (read as the CLI reads them: a
    transparent PNG over white, not Gradio's own conversion), unreadable ones too (the engine says why)."""
    from gradio.data_classes import FileData

    from styleswap_ext.apps.studio.page import Studio, build

    demo = build(Studio(engine))
    rgba = tmp_path / "see-through.png"
    Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(rgba)
    for elem_id in ("content", "gallery_content"):
        component = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)
        for path in (rgba, uploads / "bad.jpg", uploads / "cat.jpg"):
            assert component.preprocess(FileData(path=str(path), orig_name=path.name)) == str(path)
    demo.close()


@pytest.mark.parametrize("argv", [["--help"], ["studio", "--help"], ["studio", "--port", "0"]])
def test_the_command_line_needs_neither_gradio_nor_torch_to_answer(argv):
    import subprocess
    import sys

    from _studio_live import REPO

    probe = ("import sys; from styleswap_ext.apps import cli; rc = cli.main(sys.argv[1:]); "
             "print('RC', rc, 'gradio' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=REPO,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, timeout=120)
    rc = 0 if argv[-1] == "--help" else 2  # --port 0: a usage error, before anything is imported
    assert out.stdout.strip().splitlines()[-1] == f"RC {rc} False False", (out.stdout, out.stderr)


def test_api_parameters_default_to_the_command_lines():
    import inspect

    from styleswap_ext.apps.studio.page import api_function

    params = list(inspect.signature(api_function(None)).parameters.values())
    assert [p.name for p in params[:2]] == ["content", "style"]
    defaults = StylizeSettings()
    for p in params[2:]:
        assert p.default == getattr(defaults, p.name), p.name


# --- the live server ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory, vgg_weights):
    tmp = tmp_path_factory.mktemp("studio")
    server = start(tmp, vgg_weights, "--device", "cpu", "--max-upload-mb", "1")
    yield server
    if server.proc.poll() is None:
        stop(server)


@pytest.fixture(scope="module")
def client(live):
    from gradio_client import Client

    return Client(live.url, verbose=False)


def test_starts_fast_on_127_0_0_1_only(live):
    assert live.url.startswith("http://127.0.0.1:")
    # the bar: 15 s on the 2-core CPU. On a machine busy with other work (load above its 2 cores) the
    # wall time measures the others too: then the server's own CPU time must stay within it.
    took = f"answered {live.started_s:.1f} s after the start, {live.started_cpu_s:.1f} s CPU, load {live.load:.1f}"
    assert (live.started_s if live.load <= 2.5 else live.started_cpu_s) <= 15, took
    addresses = listening(live.proc.pid)
    assert addresses and {a for a, _ in addresses} == {"127.0.0.1"}, addresses


def test_api_result_equals_the_command_line(client, tmp_path, monkeypatch, vgg_weights):
    from gradio_client import handle_file

    monkeypatch.setenv("STYLESWAP_VGG19_WEIGHTS", str(vgg_weights))  # as the server has them

    path, summary, command = client.predict(handle_file(ASSETS / "cat.jpg"), handle_file(ASSETS / "starry_night.jpg"),
                                            alpha=0.7, preserve_color=True, api_name="/stylize", **SMALL)
    assert command.startswith("styleswap stylize cat.jpg starry_night.jpg -o stylised.png --alpha 0.7 "
                              "--preserve-color --content-size 96 --style-size 96 --device cpu")
    assert "device cpu" in summary
    cli_out = _run_command(command, [ASSETS / "cat.jpg", ASSETS / "starry_night.jpg"], tmp_path)
    assert psnr(cli_out, pixels(path)) >= 45


def test_bad_upload_gets_an_error_and_the_next_request_works(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(AppError, match=r"content \(holiday.jpg\): "):
        client.predict(handle_file(bad), handle_file(ASSETS / "starry_night.jpg"), api_name="/stylize", **SMALL)
    with pytest.raises(AppError, match="alpha must be a number in"):
        client.predict(handle_file(ASSETS / "cat.jpg"), handle_file(ASSETS / "starry_night.jpg"), alpha=3,
                       api_name="/stylize", **SMALL)
    path, _, _ = client.predict(handle_file(ASSETS / "cat.jpg"), handle_file(ASSETS / "starry_night.jpg"),
                                api_name="/stylize", **SMALL)
    assert Image.open(path).size == (96, 72)


def test_an_upload_over_the_limit_is_refused(client, tmp_path):
    big = tmp_path / "big.png"  # noise does not compress: 3 MB of PNG against the server's 1 MB
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(big)
    from gradio_client import handle_file

    with pytest.raises(Exception, match="(?i)maximum|too large|exceeds|413"):
        client.predict(handle_file(big), handle_file(ASSETS / "starry_night.jpg"), api_name="/stylize", **SMALL)


def test_a_path_sent_by_a_client_is_never_read(client):
    from gradio_client.exceptions import AppError

    sneaky = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}
    with pytest.raises((AppError, ValueError)) as e:
        client.predict(sneaky, sneaky, api_name="/stylize", **SMALL)
    assert Path("/etc/hostname").read_text().strip() not in str(e.value)


def test_four_concurrent_requests_all_get_their_results_within_the_memory_plan(live, client, tmp_path):
    from gradio_client import Client, handle_file

    from styleswap_ext.pipeline import memory_plan

    # a first request at this size: models loaded, allocator warm; then the peak of four at once
    args = dict(content_size=256, style_size=256, api_name="/stylize")
    client.predict(handle_file(ASSETS / "cat.jpg"), handle_file(ASSETS / "starry_night.jpg"), **args)
    idle = status_kib(live.proc.pid, "VmRSS")
    alphas = [0.25, 0.5, 0.75, 1.0]

    def one(alpha):  # a client each, as four users would
        c = Client(live.url, verbose=False)
        return c.predict(handle_file(ASSETS / "cat.jpg"), handle_file(ASSETS / "starry_night.jpg"), alpha=alpha,
                         **args)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, alphas))
    peak = status_kib(live.proc.pid, "VmHWM")
    assert len(results) == 4 and len({r[0] for r in results}) == 4
    for (path, _, command), alpha in zip(results, alphas):
        assert Image.open(path).size == (256, 192) and (f"--alpha {alpha:g}" in command) == (alpha != 1.0)
    # one job at a time: the peak above the idle server is within one job's plan (the plan also counts
    # the style bank, which these requests reuse)
    plan = memory_plan.estimate(((288, 384), (192, 256)), [((240, 384), (160, 256))], tile_size=1024)
    figures = f"peak {peak / 1024:.0f} MiB, idle {idle / 1024:.0f} MiB, plan {plan.total / 2**20:.0f} MiB"
    print(figures)  # pytest -s shows them (docs/studio.md, "Measured")
    assert (peak - idle) * 1024 <= plan.total, figures


def test_ctrl_c_stops_it_cleanly_and_removes_the_uploads(tmp_path_factory, vgg_weights):
    tmp = tmp_path_factory.mktemp("stopping")
    server = start(tmp, vgg_weights, "--device", "cpu")
    uploads = list(tmp.glob("styleswap-studio-*"))
    assert len(uploads) == 1
    time.sleep(0.5)
    rc, out, err = stop(server)
    assert rc == 0 and out.strip().endswith("styleswap studio: stopped"), (out, err)
    assert "Traceback" not in err
    assert not uploads[0].exists()

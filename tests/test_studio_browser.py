"""styleswap studio in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright
for Python against a live server on 127.0.0.1. Without a Chromium the tests skip saying so, except
in CI (``CI`` set), where they must run (``.ci/run`` installs it).

``STYLESWAP_STUDIO_SCREENSHOT=PATH`` saves a screenshot of the page with a result (docs/studio.png).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="styleswap studio needs Gradio: pip install '.[studio]'")

from _studio_live import ASSETS, pixels, psnr, start, stop  # noqa: E402

CHROMIUM_ENV = "STYLESWAP_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# headless, and no calls of Chromium's own home (updates, sync, field trials) from a machine that is offline
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-default-apps"]
SHARED_DATA = Path(os.environ.get("STYLESWAP_TEST_SHARED") or Path(__file__).resolve().parents[2] / "shared") / "data"
PHOTO = SHARED_DATA / "content" / "erase__red_panda.jpg"  # never seen by the project's code or tests
PAINTING = SHARED_DATA / "style" / "details__PortraitOfPereTanguy_background.jpg"
SIZE = 128
TIMEOUT_MS = 180_000
ERROR = "#error [data-testid=markdown]"  # the message (#error also holds Gradio's progress overlay)


def _chromium() -> str:
    path = os.environ.get(CHROMIUM_ENV) or next(filter(None, map(shutil.which, CANDIDATES)), None)
    if path:
        return path
    why = f"no Chromium found ({', '.join(CANDIDATES)} on PATH, or ${CHROMIUM_ENV}): apt-get install chromium"
    if os.environ.get("CI"):
        pytest.fail(f"{why} -- CI must run the browser tests")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (Python; no browser download)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory, vgg_weights):
    server = start(tmp_path_factory.mktemp("studio-browser"), vgg_weights, "--device", "cpu")
    yield server
    stop(server)


REQUESTS: list = []  # every URL any page of this module asked for


@pytest.fixture
def page(browser, live):
    context = browser.new_context(viewport={"width": 1000, "height": 900})  # small: a software-rendered canvas
    context.on("request", lambda r: REQUESTS.append(r.url))
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(live.url)
    pg.wait_for_selector("#stylize")
    yield pg
    context.close()


@pytest.fixture
def images(tmp_path):
    """The photo and the painting from the project's shared data (else the bundled pair), and a
    second style of blue and white stripes."""
    photo, painting = (PHOTO, PAINTING) if PHOTO.is_file() and PAINTING.is_file() else \
        (ASSETS / "cat.jpg", ASSETS / "starry_night.jpg")
    y, x = np.mgrid[0:128, 0:128]
    stripes = np.where(((x + y) // 8 % 2 == 0)[..., None], [20, 40, 220], [235, 235, 250]).astype(np.uint8)
    Image.fromarray(stripes, "RGB").save(tmp_path / "stripes.png")
    return photo, painting, tmp_path / "stripes.png"


def _fetch(page, locator) -> np.ndarray:
    """The pixels of an <img> (or a download link) as the page has them."""
    el = page.locator(locator).first
    src = el.get_attribute("src") or el.get_attribute("href")
    body = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(np.float64)


def _settings(page, size=SIZE):
    page.fill("#content_size input", str(size))
    page.fill("#style_size input", str(size))


def _stylise(page):
    page.click("#stylize")
    page.wait_for_function("() => { const i = document.querySelector('#result img');"
                           f" const e = document.querySelector('{ERROR}');"
                           " return (i && i.src) || (e && e.innerText.trim()); }")
    err = page.inner_text(ERROR).strip()
    assert not err, err


def test_a_photo_and_a_painting_give_the_apis_result(page, live, images):
    from gradio_client import Client, handle_file

    photo, painting, _ = images
    page.set_input_files("#content input[type=file]", str(photo))
    page.set_input_files("#styles input[type=file]", str(painting))
    _settings(page)
    slider = page.locator("#alpha input[type=range]")
    slider.focus()
    for _ in range(3):  # move the slider: 1 -> 0.85 in steps of 0.05
        slider.press("ArrowLeft")
    assert page.input_value("#alpha input[type=number]") == "0.85"
    _stylise(page)
    shown = _fetch(page, "#result img")
    content = np.asarray(Image.open(photo).convert("RGB").resize((shown.shape[1], shown.shape[0]), Image.LANCZOS))
    assert max(shown.shape[:2]) == SIZE and np.abs(shown - content).mean() > 10  # stylised, not the photo
    command = page.inner_text("#command")
    assert f"styleswap stylize {photo.name} {painting.name} -o stylised.png --alpha 0.85" in command
    assert "search exact" in page.inner_text("#info")
    path, _, api_command = Client(live.url, verbose=False).predict(
        handle_file(photo), handle_file(painting), alpha=0.85, content_size=SIZE, style_size=SIZE,
        api_name="/stylize")
    assert psnr(pixels(path), shown) >= 45
    assert api_command.split(" --device")[0] in command
    shot = os.environ.get("STYLESWAP_STUDIO_SCREENSHOT")
    if shot:
        page.set_viewport_size({"width": 1400, "height": 1000})  # the layout a desktop browser shows
        page.wait_for_timeout(1000)
        page.screenshot(path=shot, full_page=True)


def test_a_painted_two_region_mask_keeps_each_regions_style(page, images):
    photo, painting, stripes = images
    page.set_input_files("#content input[type=file]", str(ASSETS / "cat.jpg"))
    page.set_input_files("#styles input[type=file]", [str(painting), str(stripes)])
    _settings(page)
    page.get_by_text("Regions: paint where each style goes").click()
    canvas = page.locator("#regions canvas").first
    canvas.wait_for()
    page.wait_for_timeout(1000)  # the content drawn as the editor's background
    page.click("#regions button[aria-label=Color]")
    page.click("#regions button.color[style*='rgb(0, 130, 200)']")  # style 2's colour: blue
    page.click("#regions button[aria-label=Color]")  # close the palette
    # the picture is centred in the canvas at the zoom the editor shows; a stroke must start on it
    box = canvas.bounding_box()
    zoom = float(page.locator("#regions").get_by_text("%").first.inner_text().strip().rstrip("%")) / 100
    w, h = 384 * zoom, 288 * zoom  # cat.jpg, as the editor draws it
    x0, y0 = box["x"] + (box["width"] - w) / 2, box["y"] + (box["height"] - h) / 2
    for fx in (0.62, 0.75, 0.88):  # the brush (48 px radius) covers the right half of the picture
        page.mouse.move(x0 + w * fx, y0 + 4)
        page.mouse.down()
        page.mouse.move(x0 + w * fx, y0 + h - 4, steps=8)
        page.mouse.up()
    page.wait_for_timeout(500)
    _stylise(page)
    names = page.eval_on_selector_all("#download a", "els => els.map(e => e.href.split('/').pop())")
    assert sorted(names) == ["content-mask.png", "style1-mask.png", "style2-mask.png", "stylised.png"], names
    mask = _fetch(page, "#download a[href$='/content-mask.png']")
    h, w = mask.shape[:2]
    red, blue = np.array([230, 25, 75]), np.array([0, 130, 200])
    left, right_half = mask[:, : int(w * 0.4)], mask[:, int(w * 0.6):]
    assert (np.abs(left - red).sum(-1) == 0).mean() > 0.98  # unpainted: style 1
    assert (np.abs(right_half - blue).sum(-1) == 0).mean() > 0.98  # painted: style 2
    out = _fetch(page, "#result img")
    w = out.shape[1]
    lmean, rmean = out[:, : int(w * 0.4)].mean((0, 1)), out[:, int(w * 0.6):].mean((0, 1))
    assert rmean[2] - rmean[0] > 40, rmean  # the stripes' blue on the right only
    assert (lmean[2] - lmean[0]) < (rmean[2] - rmean[0]) - 40, (lmean, rmean)
    assert "--content-mask content-mask.png --style-mask style1-mask.png style2-mask.png" in page.inner_text("#command")


def test_a_bad_file_shows_the_error_and_the_server_keeps_serving(page, images):
    _, painting, _ = images
    page.set_input_files("#content input[type=file]",
                         files=[{"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8\xff no JPEG"}])
    page.wait_for_function(f"() => document.querySelector('{ERROR}').innerText.includes('broken.jpg')")
    page.set_input_files("#styles input[type=file]", str(painting))
    _settings(page)
    page.click("#stylize")
    page.wait_for_function(f"() => document.querySelector('{ERROR}').innerText.includes('not an image file')")
    assert "Traceback" not in page.inner_text("body")
    assert page.inner_text(ERROR).strip() == "Error: content (broken.jpg): not an image file (or an unsupported format)"
    page.set_input_files("#content input[type=file]", str(ASSETS / "cat.jpg"))  # then a good one works
    _stylise(page)
    assert _fetch(page, "#result img").shape[:2] == (96, 128)


def test_every_request_the_pages_made_went_to_127_0_0_1(live):
    assert REQUESTS, "no page was loaded"
    origin = urlsplit(live.url).netloc
    elsewhere = sorted({u for u in REQUESTS if urlsplit(u).scheme not in ("data", "blob")
                        and urlsplit(u).netloc != origin})
    assert not elsewhere, elsewhere
    assert origin.startswith("127.0.0.1:")

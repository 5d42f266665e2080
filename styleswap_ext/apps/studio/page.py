"""The studio's page (Gradio Blocks) and its handlers.

Stable element ids for scripts and tests: ``content``, ``styles``, ``stylize`` (the button),
``result``, ``error`` (plus ``regions``, ``cancel``, ``compare``, ``download``, ``info``, ``command``
and the settings by their names, e.g. ``alpha``). The API endpoint ``stylize`` takes the content and
the style image (files) and then the settings of :class:`~styleswap_ext.pipeline.settings.StylizeSettings`,
with its defaults, i.e. the command line's.

Work runs on the :class:`~styleswap_ext.apps.studio.engine.Engine` in a worker pool of ``workers``
threads; a handler awaits it, so that when Gradio cancels the handler (the Cancel button, a client's
``job.cancel()``, a closed page) the engine is told, and the run stops at its next stage or
optimisation step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import gradio as gr
import numpy as np
from gradio import FileData

from ..._util.choices import SEARCHES
from ...pipeline.settings import StylizeSettings
from . import regions
from .engine import BUNDLED, STAGES, Cancelled, Engine, Outcome, Request, StudioError, without_path

log = logging.getLogger("styleswap.studio")

D = StylizeSettings()  # the defaults: the command line's
ASSETS = BUNDLED
EXAMPLE_CONTENT = ASSETS / "cat.jpg"
BUNDLED_STYLES = [ASSETS / "starry_night.jpg"]
PAGE_CONTENT_SIZE = 512  # the page starts here (a phone photo at full size takes minutes on a CPU); empty = keep
# the page's method choice -> (method, init)
METHODS = {"decoder": ("decoder", D.init), "optimize": ("optimize", "content"),
           "decoder+optimize": ("optimize", "decoder")}
FEW_STEPS = 20  # "decoder start + a few optimisation steps"

CSS = """
#error:not(:empty) p { color: var(--error-text-color, #b91c1c); font-weight: 600; }
"""


class Studio:
    """The handlers, over an engine and a worker pool (one thread per concurrent job)."""

    def __init__(self, engine: Engine, workers: int = 1):
        self.engine = engine
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="studio-job")

    # --- running a request with progress and cancel --------------------------------------------------------

    async def _run(self, req: Request, progress: Optional[Callable] = None, label: str = "") -> Outcome:
        cancel = threading.Event()
        stages = _stage_list(req.settings)

        def on_stage(name, done, total):
            if progress is None:
                return
            i = stages.index(name) if name in stages else 0
            frac = (i + (done / total if total else 0)) / len(stages)
            steps = f" {done}/{total}" if name == "optimize" else ""
            progress(min(frac, 1.0), desc=f"{label}{STAGES.get(name, name)}{steps}")

        fut = self.pool.submit(self.engine.run, req, on_stage, cancel.is_set)
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            cancel.set()  # the worker stops at its next stage or step
            raise

    # --- the Stylise tab ------------------------------------------------------------------------------------

    def page_request(self, content, styles, weights, editor, method, iters, alpha, preserve_color, patch_size,
                     stride, content_size, style_size, search) -> Request:
        """The page's inputs -> a Request (StudioError for what is missing or malformed)."""
        if not content:
            raise StudioError("upload a content image (or pick the example)")
        style_paths = _gallery_paths(styles)
        if not style_paths:
            raise StudioError("upload at least one style image")
        labels = None
        if editor and len(style_paths) > 1:
            layers = [np.asarray(x) for x in (editor.get("layers") or []) if x is not None]
            labels = regions.painted_labels(layers, len(style_paths))
        return Request(content=content, styles=style_paths, content_name=_name(content),
                       style_names=[_name(p) for p in style_paths], regions=labels,
                       settings=page_settings(method, iters, alpha, preserve_color, patch_size, stride, content_size,
                                              style_size, search, weights))

    async def stylize_page(self, content, styles, weights, editor, method, iters, alpha, preserve_color, patch_size,
                           stride, content_size, style_size, search, progress=gr.Progress()):
        try:
            req = self.page_request(content, styles, weights, editor, method, iters, alpha, preserve_color,
                                    patch_size, stride, content_size, style_size, search)
            out = await self._run(req, progress)
        except StudioError as e:
            return error_outputs(str(e))
        except Cancelled:
            return error_outputs("cancelled")
        except Exception as e:  # never a traceback in the page: one line, the details in the server's log
            log.exception("stylize failed")
            return error_outputs(f"unexpected {type(e).__name__}: {' '.join(str(e).split())}")
        return result_outputs(out, content)

    # --- the API endpoint -----------------------------------------------------------------------------------

    async def stylize_api(self, req: Request) -> tuple:
        try:
            out = await self._run(req)
        except (StudioError, Cancelled) as e:
            raise gr.Error(str(e) or "cancelled", print_exception=False) from None
        return str(out.path), f"{out.seconds:.2f} s; {out.summary}", out.command

    # --- the Gallery tab ------------------------------------------------------------------------------------

    async def gallery(self, content, styles, method, iters, alpha, preserve_color, patch_size, stride, content_size,
                      style_size, search, progress=gr.Progress()):
        """The content under every style given (else every bundled style), one result at a time."""
        items: List[tuple] = []
        try:
            if not content:
                raise StudioError("upload a content image (or pick the example)")
            paths = _gallery_paths(styles) or [str(p) for p in BUNDLED_STYLES]
            settings = page_settings(method, iters, alpha, preserve_color, patch_size, stride, content_size,
                                     style_size, search, "")
            for i, p in enumerate(paths):
                req = Request(content=content, styles=[p], content_name=_name(content), style_names=[_name(p)],
                              settings=settings)
                out = await self._run(req, progress, label=f"style {i + 1} of {len(paths)}: ")
                items.append((str(out.path), f"{_name(p)} ({out.seconds:.1f} s)"))
                yield items, ""
        except (StudioError, Cancelled) as e:
            yield items, _error_text(str(e) or "cancelled")
        except Exception as e:
            log.exception("gallery failed")
            yield items, _error_text(f"unexpected {type(e).__name__}: {' '.join(str(e).split())}")

    def content_changed(self, content):
        """A new content: it becomes the regions editor's background (its brush layers start empty);
        an unreadable file is reported at once."""
        if not content:
            return None, ""
        try:
            _probe(content)
        except StudioError as e:
            return None, _error_text(str(e))
        return {"background": content, "layers": [], "composite": content}, ""


# --- pure helpers (tested as functions) ------------------------------------------------------------------


def page_settings(method, iters, alpha, preserve_color, patch_size, stride, content_size, style_size, search,
                  weights) -> StylizeSettings:
    """The page's controls -> StylizeSettings (unchecked: the engine checks them, as the CLI does)."""
    if method not in METHODS:
        raise StudioError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    m, init = METHODS[method]
    return StylizeSettings(method=m, init=init, iters=iters, alpha=alpha, preserve_color=bool(preserve_color),
                           patch_size=patch_size, stride=stride, content_size=_optional_size(content_size),
                           style_size=_optional_size(style_size), search=search, style_weights=parse_weights(weights),
                           lr=D.lr, tv_weight=D.tv_weight)


def parse_weights(text) -> Optional[tuple]:
    """"1 0.5" / "1, 0.5" -> (1.0, 0.5); empty -> None (equal weights)."""
    words = [w for w in re.split(r"[\s,;]+", str(text or "").strip()) if w]
    if not words:
        return None
    try:
        return tuple(float(w) for w in words)
    except ValueError:
        raise StudioError(f"style weights must be numbers separated by spaces (e.g. 1 0.5), got {text!r}") from None


def _optional_size(v):
    return None if v is None or v == "" or v == 0 else v


def _stage_list(settings: StylizeSettings) -> List[str]:
    stages = ["models", "bank", "encode", "swap"]
    if settings.method == "decoder" or settings.init == "decoder":
        stages.append("decode")
    if settings.method == "optimize":
        stages.append("optimize")
    return stages + ["save"]


def _gallery_paths(value) -> List[str]:
    paths = []
    for item in value or []:
        p = item[0] if isinstance(item, (tuple, list)) else item
        if isinstance(p, dict):
            p = p.get("path")
        if p:
            paths.append(str(p))
    return paths


def _name(path) -> str:
    """The name a user gave a file: Gradio keeps it as the last part of the uploaded copy's path."""
    return Path(str(path)).name or "image.png"


def _probe(path) -> None:
    from ...pipeline.image_io import ImageLoadError, probe_image

    try:
        probe_image(path)
    except ImageLoadError as e:
        raise StudioError(f"content ({_name(path)}): {without_path(str(e), path)}") from None


def _error_text(message: str) -> str:
    return f"**Error:** {message}" if message else ""


def error_outputs(message: str) -> tuple:
    """(error, result, compare, download, info, command) for a failed request."""
    return _error_text(message), None, None, None, "", ""


def result_outputs(out: Outcome, content) -> tuple:
    info = f"**{out.seconds:.1f} s** — {out.summary}"
    return "", str(out.path), (str(content), str(out.path)), [str(p) for p in out.files], info, out.command


def _tolerant(component):
    """An image input that hands an unreadable upload on as its path (Gradio would fail in its own
    preprocessing, with a generic message): the engine then says what is wrong with it, in the page.
    With ``image_mode=None`` a readable upload is passed on as the file it is, untouched, so that it
    is read as the command line reads it (EXIF rotation, transparency over white: image_io)."""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception:
            return getattr(payload, "path", None)

    component.preprocess = preprocess
    return component


# --- the page -----------------------------------------------------------------------------------------------


def build(studio: Studio) -> gr.Blocks:
    """The Blocks of the page and the API endpoint ``stylize``."""
    brush = gr.Brush(colors=[regions.hex_colour(c) for c in regions.PALETTE], color_mode="fixed", default_size=48)
    legend = ", ".join(f"style {i + 1}: {n}" for i, n in enumerate(regions.COLOUR_NAMES))
    with gr.Blocks(title="styleswap studio", analytics_enabled=False) as demo:
        gr.Markdown("## styleswap studio\nStyle transfer by style swap (Chen & Schmidt 2016), on this machine. "
                    "Upload a photo and one or more paintings, then **Stylise**.")
        with gr.Tabs():
            with gr.Tab("Stylise", id="stylise-tab"):
                with gr.Row():
                    with gr.Column(scale=1):
                        content = _tolerant(gr.Image(label="Content", type="filepath", sources=["upload", "clipboard"],
                                                     image_mode=None, elem_id="content", height=280))
                        gr.Examples([[str(EXAMPLE_CONTENT)]], inputs=[content], label="Example content")
                        styles = gr.Gallery(label="Style(s) — drop one or more images", type="filepath",
                                            interactive=True, elem_id="styles", columns=4, height=180,
                                            file_types=["image"])
                        gr.Examples([[[str(p) for p in BUNDLED_STYLES]]], inputs=[styles], label="Bundled style")
                        weights = gr.Textbox(label="Style weights (one per style; empty = equal)",
                                             placeholder="e.g. 1 0.5", elem_id="style_weights")
                    with gr.Column(scale=1):
                        method = gr.Radio([("decoder (one pass)", "decoder"), ("optimise", "optimize"),
                                           ("decoder start + optimisation steps", "decoder+optimize")],
                                          value="decoder", label="Method", elem_id="method")
                        iters = gr.Slider(1, 500, value=D.iters, step=1, label="Optimisation steps", elem_id="iters")
                        alpha = gr.Slider(0, 1, value=D.alpha, step=0.05, label="Style strength (alpha)",
                                          elem_id="alpha")
                        preserve = gr.Checkbox(value=D.preserve_color, label="Preserve the content's colours",
                                               elem_id="preserve_color")
                        with gr.Row():
                            patch = gr.Slider(1, 9, value=D.patch_size, step=1, label="Patch size",
                                              elem_id="patch_size")
                            stride = gr.Slider(1, 9, value=D.stride, step=1, label="Stride", elem_id="stride")
                        with gr.Row():
                            csize = gr.Number(value=PAGE_CONTENT_SIZE, precision=0,
                                              label="Content size (px; 0 = keep)", elem_id="content_size")
                            ssize = gr.Number(value=D.style_size or 0, precision=0,
                                              label="Style size (px; 0 = keep)", elem_id="style_size")
                        search = gr.Radio(list(SEARCHES), value=D.search, label="Patch search", elem_id="search")
                        with gr.Row():
                            run = gr.Button("Stylise", variant="primary", elem_id="stylize")
                            cancel = gr.Button("Cancel", elem_id="cancel")
                    with gr.Column(scale=2):
                        error = gr.Markdown("", elem_id="error")
                        result = gr.Image(label="Result", type="filepath", format="png", interactive=False,
                                          elem_id="result", height=420)
                        compare = gr.ImageSlider(label="Before / after", type="filepath", elem_id="compare",
                                                 max_height=420)
                        download = gr.File(label="Download (the PNG; with regions also the masks)", elem_id="download",
                                           interactive=False)
                        info = gr.Markdown("", elem_id="info")
                        command = gr.Code(label="The same from the command line", language="shell",
                                          interactive=False, elem_id="command", lines=2, wrap_lines=True)
                with gr.Accordion("Regions: paint where each style goes", open=False, elem_id="regions_panel"):
                    gr.Markdown(f"Brush colours: {legend}. What is not painted takes style 1. "
                                "Needs two or more styles.")
                    editor = gr.ImageEditor(label="Regions", type="numpy", image_mode="RGBA", brush=brush,
                                            eraser=gr.Eraser(default_size=48), layers=False, transforms=(),
                                            sources=(), elem_id="regions", height=560)
            with gr.Tab("Gallery", id="gallery-tab"):
                gr.Markdown("The content under every style given here (none: every bundled style), with the "
                            "settings of the Stylise tab.")
                with gr.Row():
                    g_content = _tolerant(gr.Image(label="Content", type="filepath", sources=["upload", "clipboard"],
                                                   image_mode=None, elem_id="gallery_content", height=240))
                    g_styles = gr.Gallery(label="Styles (empty = the bundled ones)", type="filepath",
                                          interactive=True, elem_id="gallery_styles", columns=4, height=240,
                                          file_types=["image"])
                gr.Examples([[str(EXAMPLE_CONTENT)]], inputs=[g_content], label="Example content")
                with gr.Row():
                    g_run = gr.Button("Stylise under every style", variant="primary", elem_id="gallery_run")
                    g_cancel = gr.Button("Cancel", elem_id="gallery_cancel")
                g_error = gr.Markdown("", elem_id="gallery_error")
                g_out = gr.Gallery(label="Results", elem_id="gallery", columns=3, height=420, interactive=False)

        settings_inputs = [method, iters, alpha, preserve, patch, stride, csize, ssize, search]
        method.change(lambda m, n: FEW_STEPS if m == "decoder+optimize" and n == D.iters else n,
                      [method, iters], [iters], queue=False, api_visibility="private")
        content.change(studio.content_changed, [content], [editor, error], queue=False, api_visibility="private")
        job = run.click(studio.stylize_page, [content, styles, weights, editor, *settings_inputs],
                        [error, result, compare, download, info, command], concurrency_id="styleswap",
                        api_visibility="private")
        cancel.click(None, None, None, cancels=[job])
        g_job = g_run.click(studio.gallery, [g_content, g_styles, *settings_inputs], [g_out, g_error],
                            concurrency_id="styleswap", api_visibility="private")
        g_cancel.click(None, None, None, cancels=[g_job])
        gr.api(api_function(studio), api_name="stylize", concurrency_id="styleswap")
    return demo


def api_function(studio: Studio):
    """The ``stylize`` endpoint: content and style files first, then the settings with the CLI's
    defaults (the signature is the API: Gradio reads its names, types and defaults)."""

    async def stylize(content: FileData, style: FileData, method: str = D.method, init: str = D.init,
                      iters: int = D.iters, lr: float = D.lr, tv_weight: float = D.tv_weight,
                      patch_size: int = D.patch_size, stride: int = D.stride, alpha: float = D.alpha,
                      preserve_color: bool = D.preserve_color, search: str = D.search,
                      content_size: Optional[int] = D.content_size, style_size: Optional[int] = D.style_size,
                      ) -> tuple[FileData, str, str]:
        """Stylise the content with the style; returns the PNG, what ran (time, device, sizes) and the
        equivalent `styleswap stylize` command line."""
        c, s = _file_path(content), _file_path(style)
        settings = StylizeSettings(method=method, init=init, iters=iters, lr=lr, tv_weight=tv_weight,
                                   patch_size=patch_size, stride=stride, alpha=alpha, preserve_color=preserve_color,
                                   search=search, content_size=content_size, style_size=style_size)
        req = Request(content=c, styles=[s], settings=settings, content_name=_file_name(content),
                      style_names=[_file_name(style)])
        path, summary, command = await studio.stylize_api(req)
        return FileData(path=path), summary, command

    return stylize


def _file_path(f: Any) -> Optional[str]:
    if isinstance(f, dict):
        return f.get("path")
    return getattr(f, "path", None) if f is not None else None


def _file_name(f: Any) -> str:
    name = f.get("orig_name") if isinstance(f, dict) else getattr(f, "orig_name", None)
    return name or _name(_file_path(f) or "image.png")

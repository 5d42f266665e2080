"""The studio's worker: one stylisation through the pipeline API, with the models and the last style
bank kept between requests, progress by stage, a cancel, and errors as one line for the page.

No Gradio here: the handlers in :mod:`styleswap_ext.apps.studio.page` call :meth:`Engine.run` (in a
worker thread), and the tests call it directly. The stylisation itself is the command line's:
``StyleBank(styles, ...)`` then ``pipeline.stylize(content, bank, ...)`` with the keyword arguments
of :class:`~styleswap_ext.pipeline.settings.StylizeSettings` (``cli.runners._style_bank`` / ``_stylize_one``); the
bank is a :class:`~styleswap_ext.apps.studio.last_swap.LastSwapBank`, which also keeps its last swap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ...pipeline.settings import StylizeSettings
from . import regions

__all__ = ["Engine", "Request", "Outcome", "StudioError", "Cancelled", "STAGES", "BUNDLED"]

BUNDLED = Path(__file__).resolve().parents[1] / "assets"  # the package's example images

# what the page says while a stage runs
STAGES = {
    "models": "loading the models", "bank": "encoding the style(s) and building the patch bank",
    "encode": "encoding the content", "swap": "swapping patches", "decode": "decoding",
    "optimize": "optimising", "save": "saving",
}


class StudioError(Exception):
    """A request the studio refuses or cannot do: the message is one line for the page."""


class Cancelled(Exception):
    """The request was cancelled (raised at the next stage or optimisation step)."""


@dataclasses.dataclass
class Request:
    """One stylisation: uploaded files (paths inside the studio's upload folder), their names as the
    user gave them (for messages and the command line), the settings, and painted regions."""

    content: str
    styles: Sequence[str]
    settings: StylizeSettings = dataclasses.field(default_factory=StylizeSettings)
    content_name: str = "content.png"
    style_names: Optional[Sequence[str]] = None
    regions: Optional[np.ndarray] = None  # (H, W) style index per pixel (regions.painted_labels), or None


@dataclasses.dataclass
class Outcome:
    image: "object"  # PIL.Image.Image
    path: Path  # the result, saved as PNG
    seconds: float
    summary: str  # what ran: device, search, sizes, reused bank
    command: str  # the equivalent `styleswap stylize` command line
    files: List[Path]  # the result and, with regions, the masks the command names
    bank_reused: bool


class Engine:
    """Keeps the encoder, the decoder and the last style bank; runs one request at a time per caller
    thread (the models are shared read-only; the bank cache is locked)."""

    def __init__(self, *, upload_root: Path, results_root: Path, device: str = "auto",
                 vgg_weights: Optional[str] = None, decoder_weights: Optional[str] = None):
        # files are read only from here: the uploads, and the bundled images (the gallery's default styles)
        self.upload_roots = [Path(upload_root).resolve(), BUNDLED]
        self.results_root = Path(results_root)
        self.device_name = device
        self.vgg_weights, self.decoder_weights = vgg_weights, decoder_weights
        self._models_lock = threading.Lock()
        self._bank_lock = threading.Lock()
        self._encoder = self._decoder = None
        self._device = None
        self._bank = None
        self._bank_key = None

    # --- models ---------------------------------------------------------------------------------------

    @property
    def device(self):
        if self._device is None:
            from ...pipeline.stylization import resolve_device

            self._device = resolve_device(self.device_name)
        return self._device

    def models(self, need_decoder: bool):
        """(encoder, decoder or None) on the device, loaded once."""
        from ...models import load_decoder, load_encoder

        with self._models_lock:
            if self._encoder is None:
                self._encoder = load_encoder(self.vgg_weights).to(self.device).eval()
            if need_decoder and self._decoder is None:
                self._decoder = load_decoder(self.decoder_weights).to(self.device).eval()
            return self._encoder, (self._decoder if need_decoder else None)

    def warm_up(self) -> None:
        """Load the models now (the server does this in the background right after it starts)."""
        from ...models.loading import packaged_decoder_path

        self.models(need_decoder=self.decoder_weights is not None or packaged_decoder_path() is not None)

    # --- one request ------------------------------------------------------------------------------------

    def run(self, req: Request, on_stage: Optional[Callable[[str, int, int], None]] = None,
            cancelled: Callable[[], bool] = lambda: False) -> Outcome:
        """Stylise ``req``; :class:`StudioError` (one line) for anything the user can fix or should
        know, :class:`Cancelled` when ``cancelled()`` turned true."""
        from ...pipeline import memory_plan
        from ... import pipeline
        from ...pipeline.image_io import ImageLoadError, load_image, save_image
        from ...pipeline.masks import MaskError
        from ...models import NoTrainedDecoderError, WeightsUnavailableError

        def stage(name, done=0, total=1):
            if cancelled():
                raise Cancelled()
            if on_stage is not None:
                on_stage(name, done, total)

        start = time.perf_counter()
        style_names = list(req.style_names or [f"style{i + 1}.png" for i in range(len(req.styles))])
        if not req.styles:
            raise StudioError("give at least one style image")
        settings = dataclasses.replace(req.settings, device=self.device_name, vgg_weights=self.vgg_weights,
                                       decoder_weights=self.decoder_weights)
        use_regions = req.regions is not None and len(req.styles) > 1
        try:
            settings = settings.check(len(req.styles))
        except ValueError as e:
            raise StudioError(str(e)) from None
        files = [(req.content, f"content ({req.content_name})"),
                 *((p, f"style {i + 1} ({n})") for i, (p, n) in enumerate(zip(req.styles, style_names)))]
        images = []
        for path, label in files:
            try:
                images.append(load_image(self._uploaded(path, label.split(" (")[0])))
            except ImageLoadError as e:  # name the file as the user knows it, not by the server's path
                raise StudioError(f"{label}: {without_path(str(e), path)}") from None
        content, styles = images[0], images[1:]
        content_mask = style_masks = None
        if use_regions:
            labels = regions.resized(np.asarray(req.regions), content.size)
            content_mask = regions.content_mask(labels)
            style_masks = [regions.style_mask(i, s.size) for i, s in enumerate(styles)]
        need_decoder = settings.method == "decoder" or settings.init == "decoder"
        try:
            stage("models")
            encoder, decoder = self.models(need_decoder)
            bank, reused = self._style_bank(req, styles, style_masks, settings, encoder, stage)
            out = pipeline.stylize(content, bank, encoder=encoder, decoder=decoder, progress=False,
                                   content_mask=content_mask, on_stage=stage, **settings.stylize_kwargs())
        except (ValueError, TypeError, MaskError, memory_plan.MemoryPlanError, NoTrainedDecoderError,
                WeightsUnavailableError) as e:
            raise StudioError(" ".join(str(e).split())) from None
        except (MemoryError, RuntimeError) as e:
            if "out of memory" in str(e).lower() or isinstance(e, MemoryError):
                raise StudioError("out of memory: try a smaller content size or style size, or a larger stride") \
                    from None
            raise
        stage("save")
        folder = self.results_root / uuid.uuid4().hex
        folder.mkdir(parents=True)
        path = save_image(out, folder / "stylised.png")
        files = [path]
        mask_args = {}
        if content_mask is not None:
            cm = folder / "content-mask.png"
            content_mask.save(cm)
            sms = [folder / f"style{i + 1}-mask.png" for i in range(len(styles))]
            for m, p in zip(style_masks, sms):
                m.save(p)
            files += [cm, *sms]
            mask_args = dict(content_mask=cm.name, style_masks=[p.name for p in sms])
        seconds = time.perf_counter() - start
        command = settings.command(req.content_name, style_names, "stylised.png", **mask_args)
        # the server's own paths stay out of the command line (the weights it was started with excepted)
        summary = self._summary(settings, content, styles, out, bank, reused, use_regions)
        return Outcome(image=out, path=path, seconds=seconds, summary=summary, command=command, files=files,
                       bank_reused=reused)

    # --- helpers ----------------------------------------------------------------------------------------

    def _uploaded(self, path, what: str) -> str:
        """Only files inside the studio's upload folder (or the bundled images) are read: a path sent
        by a client is never opened unless the server itself stored it there."""
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise StudioError(f"{what}: no file was uploaded")
        p = Path(path).resolve()
        if not any(p.is_relative_to(root) for root in self.upload_roots):
            raise StudioError(f"{what}: not an uploaded file")
        return str(p)

    def _style_bank(self, req, styles, style_masks, settings, encoder, stage) -> Tuple[object, bool]:
        """The StyleBank for these styles and settings: the last one when its key matches (the same
        style bytes, masks and bank-shaping settings), else a new one (the old one dropped first)."""
        from .last_swap import LastSwapBank

        key = (tuple(_digest(self._uploaded(p, "style")) for p in req.styles), style_masks is not None,
               tuple(sorted(settings.bank_kwargs().items())), str(self.device))
        with self._bank_lock:
            if self._bank_key == key:
                return self._bank, True
            self._bank = self._bank_key = None  # free the old bank before building the new one
            stage("bank")
            bank = LastSwapBank(styles, encoder, device=self.device, progress=False, style_masks=style_masks,
                                **settings.bank_kwargs())
            self._bank, self._bank_key = bank, key
            return bank, False

    def _summary(self, settings, content, styles, out, bank, reused, use_regions) -> str:
        sizes = ", ".join(f"{s.width}x{s.height}" for s in styles)
        search = settings.search
        chosen = getattr(bank, "last_search", None)  # search="auto": the StyleBank's choice for this content
        if search == "auto" and chosen is not None:
            search = f"{chosen.search} (auto)"
        parts = [f"device {self.device}", f"search {search}", f"method {settings.method}"
                 + (f" ({settings.iters} steps from {settings.init})" if settings.method == "optimize" else ""),
                 f"content {content.width}x{content.height} -> {out.width}x{out.height}",
                 f"style(s) {sizes}" + (f" at {settings.style_size} px" if settings.style_size else ""),
                 ("style bank and swap reused" if getattr(bank, "last_reused", False) else "style bank reused")
                 if reused else "style bank built"]
        if use_regions:
            parts.append("painted regions")
        return "; ".join(parts)


def without_path(message: str, path) -> str:
    """An image_io message about ``path`` without the path (a server's temporary file means nothing
    to the user; the caller names the file as the user knows it)."""
    for spelling in sorted({str(path), str(Path(path).resolve())}, key=len, reverse=True):
        message = message.replace(f": {spelling}", "").replace(f" {spelling}", "").replace(spelling, "the file")
    return " ".join(message.split())


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

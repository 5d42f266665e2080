"""Reading and writing images for the pipeline and the CLI.

Loading (:func:`load_image`) always gives an 8-bit RGB PIL image:

* EXIF orientation is applied (``ImageOps.exif_transpose``), so a photo stands the way the camera
  meant it;
* transparency (RGBA, LA, palette images with a transparent colour) is composited **over white**:
  the transparent parts of a logo or cut-out come out as the white page they are usually shown on,
  instead of the arbitrary colours stored under alpha = 0;
* greyscale (L, LA, 1) becomes RGB by repeating the channel;
* 16-bit and 32-bit integer images (modes ``I;16*``, ``I``) are scaled to 8 bits (``/ 257``, so
  65535 -> 255); float images (mode ``F``) are taken as [0, 1] when their maximum is <= 1, else as
  0-255; CMYK/YCbCr/HSV/Lab are converted by PIL.

Every failure (missing file, directory, unreadable, not an image, truncated or corrupt data) raises
:class:`ImageLoadError` (a ``ValueError``) with a one-line message naming the file. An image larger
than Pillow's safety limit against decompression bombs (``Image.MAX_IMAGE_PIXELS``, ~179 million
pixels for the error, ~89 million for its warning) is reported as such; set the environment variable
``STYLESWAP_MAX_IMAGE_PIXELS`` to a pixel count (0 = no limit) to open a trusted larger image.

Saving (:func:`save_image`) is atomic: the image is written to a temporary file in the target
directory and moved over the target with ``os.replace``; on any error the temporary file is
removed, so no partial or corrupt output is ever left behind. The format comes from the file's
extension (any format PIL can write an RGB image in: .png, .jpg/.jpeg, .webp, .bmp, .tif/.tiff, ...;
:func:`output_format` refuses the others, e.g. .xbm or .palm, before any work).
"""

from __future__ import annotations

import functools
import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .._util.atomic import atomic_path

__all__ = [
    "ImageLoadError",
    "load_image",
    "probe_image",
    "to_rgb",
    "save_image",
    "output_format",
    "is_image_path",
    "pil_to_tensor",
    "pil_to_uint8",
    "uint8_to_float",
    "tensor_to_pil",
    "resize_longest",
]

PathLike = Union[str, os.PathLike]


class ImageLoadError(ValueError):
    """An input image is missing, unreadable, not an image, or corrupt."""


PIXEL_LIMIT_ENV = "STYLESWAP_MAX_IMAGE_PIXELS"


def _apply_pixel_limit() -> None:
    """``STYLESWAP_MAX_IMAGE_PIXELS`` (if set) as Pillow's decompression-bomb limit; 0 = no limit."""
    text = os.environ.get(PIXEL_LIMIT_ENV)
    if text is None:
        return
    try:
        limit = int(text)
    except ValueError:
        raise ValueError(f"{PIXEL_LIMIT_ENV} must be a whole number of pixels (0 = no limit), got {text!r}") from None
    Image.MAX_IMAGE_PIXELS = limit if limit > 0 else None


def _flatten_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb8(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in img.info):
        return _flatten_alpha(img)
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img).astype(np.float64)
        if arr.ndim == 3:  # e.g. 16-bit with several channels in a future PIL
            arr = arr[..., :3]
        if mode == "F":
            scale = 255.0 if arr.size and np.nanmax(arr) <= 1.0 else 1.0
        else:
            scale = 1.0 / 257.0 if (mode.startswith("I;16") or (arr.size and arr.max() > 255)) else 1.0
        arr = np.clip(np.nan_to_num(arr * scale), 0, 255).round().astype(np.uint8)
        img = Image.fromarray(arr)
    return img.convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """An in-memory PIL image -> 8-bit RGB with EXIF orientation applied (same rules as loading)."""
    return _to_rgb8(ImageOps.exif_transpose(img))


@contextmanager
def _reading(p: Path):
    """Every failure to read ``p`` inside the block as an ImageLoadError naming the file."""
    if not p.exists():
        raise ImageLoadError(f"image file not found: {p}")
    if p.is_dir():
        raise ImageLoadError(f"expected an image file but got a directory: {p}")
    _apply_pixel_limit()
    try:
        yield
    except Image.DecompressionBombError as e:
        raise ImageLoadError(
            f"image file {p} is larger than Pillow's safety limit against decompression bombs ({str(e).rstrip('.')}); "
            f"if you trust it, set {PIXEL_LIMIT_ENV} to a larger pixel count (0 = no limit)") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"not an image file (or an unsupported format): {p}") from None
    except PermissionError:
        raise ImageLoadError(f"cannot read image file (permission denied): {p}") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ImageLoadError(f"cannot read image file {p}: corrupt or truncated ({e})") from None


def probe_image(path: PathLike) -> None:
    """Raise :class:`ImageLoadError` unless ``path`` is a readable file that starts like an image.
    Reads the header only (milliseconds): corrupt pixel data shows up in :func:`load_image`."""
    p = Path(path)
    with _reading(p), Image.open(p):
        pass


def image_size(path: PathLike) -> Tuple[int, int]:
    """``(height, width)`` of an image file as :func:`load_image` will see it (EXIF rotation included),
    from its header only; :class:`ImageLoadError` naming the file if it cannot be read."""
    p = Path(path)
    with _reading(p), Image.open(p) as im:
        w, h = im.size
        return (w, h) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (h, w)


def load_image(path: PathLike) -> Image.Image:
    """Open ``path`` as an 8-bit RGB PIL image (see the module docstring for the conversions)."""
    p = Path(path)
    with _reading(p), Image.open(p) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        rgb = _to_rgb8(im)
        rgb.load()
    if rgb.width < 1 or rgb.height < 1:
        raise ImageLoadError(f"image file is empty (0 pixels): {p}")
    return rgb


def output_format(path: PathLike) -> str:
    """PIL format name for ``path``'s extension, e.g. ``'PNG'``; ValueError if PIL cannot write it."""
    ext = Path(path).suffix.lower()
    if not ext:
        raise ValueError(f"output file {str(path)!r} has no extension: use e.g. .png or .jpg")
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot write images with extension {ext!r} (output {str(path)!r}): use e.g. .png or .jpg")
    if not writes_rgb(fmt):
        raise ValueError(f"cannot write an RGB image as {fmt} (output {str(path)!r}): use e.g. .png or .jpg")
    return fmt


@functools.lru_cache(maxsize=None)
def writes_rgb(fmt: str) -> bool:
    """Whether Pillow can save an 8-bit RGB image in format ``fmt``: a trial save of a tiny image to
    memory (some formats take only 1-bit or palette images, e.g. XBM, MSP, Palm; some have no
    writer installed, e.g. BUFR, GRIB, HDF5), so that an output is refused before the work."""
    try:
        Image.new("RGB", (8, 8)).save(io.BytesIO(), format=fmt)
    except Exception:  # noqa: BLE001 (any failure means: cannot write this format)
        return False
    return True


def is_image_path(path: PathLike) -> bool:
    """True for files whose extension PIL knows (used to pick the images of a directory)."""
    p = Path(path)
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in Image.registered_extensions()


def save_image(img: Image.Image, path: PathLike, quality: int = 95) -> Path:
    """Write ``img`` to ``path`` atomically (temp file in the same directory + ``os.replace``)."""
    path = Path(path)
    fmt = output_format(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {path.parent}")
    if fmt in ("JPEG", "MPO") and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "PNG":
        # zlib level 1, not Pillow's 6: a 4096 px result saves ~4.5x faster (6 s -> 1.2 s on 2 cores)
        # for ~20 % more bytes; PNG stays lossless at every level (docs/high_resolution.md).
        kwargs = {"compress_level": 1}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        img.save(f, format=fmt, **kwargs)
    return path


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> uint8 ``(3, H, W)`` (a channels-last view of one copy of the pixels)."""
    arr = np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def uint8_to_float(t: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] (on the tensor's device: convert after moving it to a GPU,
    so that a quarter of the bytes cross the bus and the CPU does no per-pixel work)."""
    return t.float().div_(255.0)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> float32 ``(3, H, W)`` in [0, 1]."""
    return uint8_to_float(pil_to_uint8(img))


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(1, 3, H, W)`` tensor in [0, 1] -> 8-bit RGB PIL image (clamped, rounded)."""
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
        t = t[0]
    # on the tensor's device, and contiguous there, so that the host gets ready (H, W, 3) bytes
    arr = t.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    return Image.fromarray(arr, mode="RGB")


def resize_longest(img: Image.Image, size) -> Image.Image:
    """Resize so the longest side is ``size`` px (None: unchanged); Lanczos, aspect kept."""
    if size is None:
        return img
    w, h = img.size
    new = resized_size((h, w), size)[::-1]
    return img if new == (w, h) else img.resize(new, Image.Resampling.LANCZOS)


def resized_size(hw: Tuple[int, int], size) -> Tuple[int, int]:
    """``(height, width)`` after :func:`resize_longest` of an image of ``hw`` to ``size`` (None: unchanged)."""
    h, w = hw
    if size is None:
        return h, w
    scale = size / max(w, h)
    return max(1, round(h * scale)), max(1, round(w * scale))

"""Where the encoder's and the decoder's weights come from: lookup, cache, download, installation.

Where the weights come from (:func:`load_encoder`), first hit wins:

1. the ``weights`` argument (CLI ``--vgg-weights``): a path or a state dict;
2. the environment variable ``STYLESWAP_VGG19_WEIGHTS`` (a path);
3. the sliced checkpoint cached by an earlier download in the cache directory
   (``$STYLESWAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/styleswap``, else ``~/.cache/styleswap``), used
   only when the sha256 of its tensors is torchvision's (a wrong or truncated file there is skipped
   with one line, and the download below replaces it);
4. torchvision's published ``vgg19-dcbb9e9d.pth`` (IMAGENET1K_V1), fetched with
   ``torch.hub.load_state_dict_from_url`` (sha256 prefix checked, progress bar; the full 548 MB
   file lands in torch hub's checkpoint directory, as torchvision would put it), sliced to the
   layers needed and saved in the cache directory (about 2.3 MB up to conv3_1).

A weights file may be a slice with keys ``0.weight, 0.bias, 2.weight, ...`` (the layout of
``../shared/weights/vgg19_conv1_1-conv3_1_torchvision.pth``) or a full torchvision checkpoint with
keys ``features.0.weight, ...`` (it is sliced on load). Loading is strict.

:func:`load_decoder` loads trained weights; with ``weights=None`` it looks for the weights shipped
in the package (``styleswap_ext/models/weights/decoder.pth`` or ``.safetensors``) and raises
:class:`NoTrainedDecoderError` when there are none.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Mapping, Optional, Union

import torch

from .._util.atomic import torch_save_atomic
from .networks import LAYERS, Decoder, VGGEncoder, _check_layer, _conv_indices

__all__ = [
    "load_encoder",
    "load_decoder",
    "NoTrainedDecoderError",
    "WeightsUnavailableError",
    "VGG19_URL",
    "ENV_VGG_WEIGHTS",
    "cache_dir",
    "packaged_decoder_path",
    "install_vgg_weights",
    "vgg_weights_status",
    "VGG19_SLICE_SHA256",
]

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# sha256 of torchvision's conv1_1...conv3_1 (in that file), taken over the tensors rather than a file, so
# that the full checkpoint and any slice of it give the same digest (see vgg_slice_digest).
VGG19_SLICE_SHA256 = "9424b015b11ea22aa96ea9ed5d44c5466fab9c9cd2658c95844dd827fa65d27a"
ENV_VGG_WEIGHTS = "STYLESWAP_VGG19_WEIGHTS"

WeightsArg = Union[None, str, os.PathLike, Mapping[str, torch.Tensor]]


class WeightsUnavailableError(RuntimeError):
    """The VGG-19 weights are neither given, cached, nor downloadable (e.g. offline)."""


class NoTrainedDecoderError(RuntimeError):
    """No trained inverse network is installed (use the optimisation method instead)."""



def cache_dir() -> Path:
    """``$STYLESWAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/styleswap``, else ``~/.cache/styleswap``."""
    if os.environ.get("STYLESWAP_CACHE_DIR"):
        return Path(os.environ["STYLESWAP_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "styleswap"


def _cache_file(layer: str) -> Path:
    last_conv = {"relu1_1": "conv1_1", "relu2_1": "conv2_1", "relu3_1": "conv3_1", "relu4_1": "conv4_1"}[layer]
    if layer in ("relu1_1", "relu2_1", "relu3_1"):
        last_conv = "conv3_1"  # one cached slice serves every layer up to relu3_1
    return cache_dir() / f"vgg19_conv1_1-{last_conv}_torchvision.pth"


def _load_file(path, what: str):
    """The object stored in a weights file (``torch.load(weights_only=True)``, or safetensors)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise FileNotFoundError(f"{what} file {path} is a directory: give the weights file (.pth) itself")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise RuntimeError(f"{path} is a .safetensors file: install the 'safetensors' package to read it") from e
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as e:
        # a zip without its end, or the old format cut short: torch says so in a page of text
        if isinstance(e, EOFError) or "PytorchStreamReader" in str(e) or "unexpected EOF" in str(e):
            raise RuntimeError(f"cannot read {what} file {path}: not a complete checkpoint (truncated or corrupt: "
                               "an interrupted download or copy?)") from e
        raise
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        # torch's message is a page long and suggests weights_only=False, which we never do
        raise RuntimeError(f"cannot read {what} file {path}: not a PyTorch weights file, or one holding objects "
                           f"other than tensors and plain containers (weights are loaded with "
                           f"torch.load(weights_only=True))") from e
    except Exception as e:
        raise RuntimeError(f"cannot read {what} file {path}: {e.__class__.__name__}: {e}") from e


def _state_dict_of(obj, path, what: str) -> dict:
    """A bare state dict, or the ``"state_dict"`` entry of a checkpoint."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise RuntimeError(f"{what} file {path} does not hold a state dict (got {type(obj).__name__})")
    return dict(obj)


def _read_state_dict(path, what: str) -> dict:
    return _state_dict_of(_load_file(path, what), path, what)


def _slice_vgg(sd: Mapping[str, torch.Tensor], layer: str, source: str) -> dict:
    """Keep the conv weights the encoder up to ``layer`` needs, with keys ``<index>.weight/bias``."""
    keys = {k[len("features."):] if k.startswith("features.") else k: v for k, v in sd.items()}
    needed = [f"{i}.{p}" for i in _conv_indices(LAYERS[layer]) for p in ("weight", "bias")]
    missing = [k for k in needed if k not in keys]
    if missing:
        have = sorted({int(k.split(".")[0]) for k in keys if k.split(".")[0].isdigit()})
        raise RuntimeError(
            f"the VGG-19 weights from {source} do not contain the layers {layer} needs "
            f"(missing {', '.join(missing[:4])}{'...' if len(missing) > 4 else ''}; it has conv indices {have}). "
            + ("Layers beyond relu3_1 need the full torchvision checkpoint vgg19-dcbb9e9d.pth."
               if LAYERS[layer] > LAYERS["relu3_1"] else "")
        )
    return {k: keys[k].detach().to(torch.float32).contiguous() for k in needed}


def _download_vgg(layer: str, progress: bool) -> dict:
    target = _cache_file(layer)
    try:
        sd = torch.hub.load_state_dict_from_url(VGG19_URL, map_location="cpu", progress=progress, check_hash=True)
    except Exception as e:
        raise WeightsUnavailableError(
            f"no VGG-19 weights available: downloading {VGG19_URL} failed ({e.__class__.__name__}: {e}). "
            f"Download that file where there is internet access, then run `styleswap weights install PATH` "
            f"once (it checks the file and caches the layers used, offline from then on), or pass it with "
            f"--vgg-weights PATH (Python: weights=PATH) or {ENV_VGG_WEIGHTS}=PATH on every run"
        ) from e
    sliced = _slice_vgg(sd, layer, VGG19_URL)
    try:  # cache the slice; a read-only cache is not an error
        target.parent.mkdir(parents=True, exist_ok=True)
        torch_save_atomic(sliced, target)
    except OSError:
        pass
    return sliced


def vgg_slice_digest(sliced: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the keys ``<index>.weight/bias`` in layer order, each key's name and then its
    float32 values: the identity of the weights, whatever file they came from."""
    import hashlib

    h = hashlib.sha256()
    for key in sorted(sliced, key=lambda k: (int(k.split(".")[0]), k)):
        h.update(key.encode())
        h.update(sliced[key].detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def install_vgg_weights(path) -> Path:
    """Put the VGG-19 weights of ``path`` (torchvision's full checkpoint or its conv1_1-conv3_1
    slice) into the cache, where :func:`load_encoder` finds them offline. Checks that the file has
    the layers up to relu3_1 and that they are torchvision's ImageNet weights
    (:data:`VGG19_SLICE_SHA256`). Returns the cached file."""
    sliced = _slice_vgg(_read_state_dict(path, "VGG-19 weights"), "relu3_1", str(path))
    digest = vgg_slice_digest(sliced)
    if digest != VGG19_SLICE_SHA256:
        raise RuntimeError(f"{path} does not hold torchvision's VGG-19 ImageNet weights (vgg19-dcbb9e9d.pth): "
                           f"the sha256 of its conv1_1-conv3_1 is {digest[:16]}..., expected "
                           f"{VGG19_SLICE_SHA256[:16]}... (other weights can still be used with --vgg-weights)")
    target = _cache_file("relu3_1")
    target.parent.mkdir(parents=True, exist_ok=True)
    torch_save_atomic(sliced, target)
    return target


def _checked_cache(path: Path):
    """``(state dict, None)`` when the cache file ``path`` holds torchvision's conv1_1-conv3_1 (sha256
    over the tensors, :data:`VGG19_SLICE_SHA256`; ~20 ms for its 2.3 MB on the 2-core CPU), else
    ``(None, what is wrong)``."""
    try:
        sd = _read_state_dict(path, "cached VGG-19 weights")
        digest = vgg_slice_digest(_slice_vgg(sd, "relu3_1", str(path)))
    except RuntimeError as e:
        return None, str(e)
    if digest != VGG19_SLICE_SHA256:
        return None, (f"the sha256 of its conv1_1-conv3_1 is {digest[:16]}..., not torchvision's "
                      f"{VGG19_SLICE_SHA256[:16]}...")
    return sd, None


def _cached_or_downloaded(layer: str, progress: bool):
    """``(state dict, source)`` from the cache when it holds the expected weights, else from the download
    (which replaces a wrong or broken cache file). A cache file that fails the check is never used: the
    run says so in one line (a warning when the download replaces it, the error when that fails too)."""
    import warnings

    cache = _cache_file(layer)
    if not cache.is_file():
        return _download_vgg(layer, progress), VGG19_URL
    sd, problem = _checked_cache(cache)
    if problem is None:
        return sd, str(cache)
    try:
        sd = _download_vgg(layer, progress)
    except WeightsUnavailableError as e:
        cause = e.__cause__ if e.__cause__ is not None else e
        raise WeightsUnavailableError(
            f"the cached VGG-19 weights {cache} are not the expected ones, so they were not used ({problem}), "
            f"and downloading them failed ({cause.__class__.__name__}: {cause}): put the right file into the "
            f"cache with `styleswap weights install vgg19-dcbb9e9d.pth` (from {VGG19_URL}), or pass it with "
            f"--vgg-weights PATH") from e
    warnings.warn(f"the cached VGG-19 weights {cache} were not the expected ones ({problem}): "
                  "not used; downloaded them again", stacklevel=3)
    return sd, VGG19_URL


def vgg_weights_status() -> dict:
    """Where :func:`load_encoder` (without ``weights``) would take the VGG-19 weights from now:
    ``{"source": "env" | "cache" | "download", "path": ..., "cache": <cache file>, "cache_ok": bool|None}``
    (``cache_ok``: whether the cached file, if there is one, has the expected digest)."""
    cache = _cache_file("relu3_1")
    cache_ok = None
    if cache.is_file():
        cache_ok = _checked_cache(cache)[1] is None
    if os.environ.get(ENV_VGG_WEIGHTS):
        source, path = "env", os.environ[ENV_VGG_WEIGHTS]
    elif cache.is_file():
        source, path = "cache", str(cache)
    else:
        source, path = "download", VGG19_URL
    return {"source": source, "path": path, "cache": str(cache), "cache_ok": cache_ok}


def load_encoder(
    weights: WeightsArg = None,
    layer: str = "relu3_1",
    device: Union[None, str, torch.device] = None,
    progress: bool = True,
) -> VGGEncoder:
    """VGG-19 encoder to ``layer`` with ImageNet weights; frozen, eval mode (see module docstring)."""
    _check_layer(layer)
    if weights is not None and not isinstance(weights, Mapping):
        sd, source = _read_state_dict(weights, "VGG-19 weights"), str(weights)
    elif weights is not None:
        sd, source = dict(weights), "the given state dict"
    elif os.environ.get(ENV_VGG_WEIGHTS):
        path = os.environ[ENV_VGG_WEIGHTS]
        sd, source = _read_state_dict(path, f"VGG-19 weights ({ENV_VGG_WEIGHTS})"), path
    else:  # the cache (only if its sha256 is right), else the download
        sd, source = _cached_or_downloaded(layer, progress)

    encoder = VGGEncoder(layer)
    encoder.features.load_state_dict(_slice_vgg(sd, layer, source), strict=True)
    encoder.requires_grad_(False).eval()
    return encoder.to(device) if device is not None else encoder


def packaged_decoder_path() -> Optional[Path]:
    """The trained decoder shipped in the package (``weights/decoder.pth|.safetensors``), if any."""
    here = Path(__file__).resolve().parent / "weights"  # styleswap_ext/models/weights
    for name in ("decoder.pth", "decoder.safetensors"):
        if (here / name).is_file():
            return here / name
    return None


def load_decoder(
    weights: WeightsArg = None,
    device: Union[None, str, torch.device] = None,
    instance_norm: Optional[bool] = None,
) -> Decoder:
    """Trained inverse network; ``weights=None`` = the weights shipped in the package.

    A checkpoint may be a bare state dict or ``{"state_dict": ..., "config": {"instance_norm": bool}}``.
    Without ``instance_norm`` the variant is read from the config, else inferred from the keys.

    Raises:
        NoTrainedDecoderError: ``weights`` is None and no trained decoder is installed.
    """
    config = {}
    if weights is None:
        path = packaged_decoder_path()
        if path is None:
            raise NoTrainedDecoderError(
                "no trained decoder is installed (styleswap_ext/models/weights/decoder.pth is missing); "
                "use the optimisation method instead: --method optimize (Python: method=\"optimize\"), "
                "or pass trained weights with --decoder-weights PATH"
            )
        weights = path
    if isinstance(weights, Mapping):
        sd = dict(weights)
    else:
        raw = _load_file(weights, "decoder weights")  # one read: the config and the state dict
        if isinstance(raw, Mapping) and isinstance(raw.get("config"), Mapping):
            config = dict(raw["config"])
        sd = _state_dict_of(raw, Path(weights).expanduser(), "decoder weights")
    if instance_norm is None:
        # with instance norm, body.2 is the InstanceNorm2d(affine) after the first conv
        instance_norm = bool(config.get("instance_norm", "body.2.weight" in sd))
    decoder = Decoder(instance_norm=instance_norm)
    try:
        decoder.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"decoder weights do not fit the Decoder architecture: {e}") from e
    decoder.requires_grad_(False).eval()
    return decoder.to(device) if device is not None else decoder

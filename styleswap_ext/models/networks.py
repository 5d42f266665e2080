"""The encoder Φ (VGG-19 up to relu3_1) and the inverse network f (relu3_1 features -> RGB).

Encoder
-------
:class:`VGGEncoder` is torchvision's ``vgg19().features`` layer layout, cut after the chosen ReLU:
3x3 convolutions with *zero* padding 1, ReLU, ``MaxPool2d(2, 2)`` (floor mode). Its input is RGB
in [0, 1], ``(N, 3, H, W)``; the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224,
0.225) are applied inside. Output: the features of ``layer`` (default ``relu3_1``: 256 channels,
``floor(H/4) x floor(W/4)``). ``relu1_1``, ``relu2_1`` and ``relu4_1`` are there for experiments
(relu4_1 needs conv3_2...conv4_1, which only the full torchvision checkpoint has).
The weights are loaded by :func:`~styleswap_ext.models.load_encoder`.

Inverse network
---------------
:class:`Decoder` mirrors the encoder to relu3_1, as in the authors' code:
conv 256->128, nearest x2, conv 128->128, conv 128->64, nearest x2, conv 64->64, conv 64->3,
with ReLU between. Choices (documented here, used by the training issue):

* **reflection padding** (1 px) before every 3x3 conv: zero padding darkens the borders of a
  generated image; reflection avoids that (the UST/AdaIN decoders do the same);
* **instance normalisation** (affine) after every conv but the last, on by default: the paper's
  author reports that instance normalisation gave the paper's results. ``instance_norm=False``
  builds the plain variant, which this project trains (``--no-instance-norm``): measured, it
  reconstructs photos ~4 dB better at the same feature loss and keeps the style's colours, which
  instance normalisation washes out (docs/training.md); it also tiles without global statistics;
* **output**: a sigmoid, so the output is always a valid image in [0, 1] and the gradient never
  dies the way it does under a clamp.
"""

from __future__ import annotations

import torch
from torch import nn

from . import cpu_layers

__all__ = ["VGGEncoder", "Decoder", "LAYERS", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision vgg19().features: 'M' = MaxPool2d(2, 2); numbers = 3x3 conv output channels.
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512]
# index (in torchvision's features Sequential) of each ReLU we can stop after.
LAYERS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20}


def _build_features(last: int) -> nn.Sequential:
    layers, in_ch = [], 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = v
        if len(layers) > last:
            break
    return nn.Sequential(*layers[: last + 1])


def _conv_indices(last: int) -> list:
    return [i for i, m in enumerate(_build_features(last)) if isinstance(m, nn.Conv2d)]


def _check_layer(layer: str) -> int:
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {', '.join(LAYERS)}, got {layer!r}")
    return LAYERS[layer]


class VGGEncoder(nn.Module):
    """VGG-19 ``features`` (torchvision layout) up to ``layer``; RGB [0, 1] in, features out.

    ``self.features`` holds the layers at torchvision's indices, so its state dict keys are
    ``0.weight, 0.bias, 2.weight, ...`` exactly as in torchvision's ``features`` block.
    The encoder is frozen (``requires_grad=False``) and in eval mode after :func:`load_encoder`.
    """

    def __init__(self, layer: str = "relu3_1"):
        super().__init__()
        self.layer = layer
        self.features = _build_features(_check_layer(layer))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def downsampling(self) -> int:
        """Input pixels per feature pixel along a side (4 for relu3_1)."""
        return 2 ** sum(isinstance(m, nn.MaxPool2d) for m in self.features)

    @property
    def out_channels(self) -> int:
        return [m for m in self.features if isinstance(m, nn.Conv2d)][-1].out_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"encoder input must be RGB (N, 3, H, W), got shape {tuple(image.shape)}")
        # the layers through cpu_layers: on the CPU without autograd, faster kernels (same values)
        return cpu_layers.run(self.features, image.sub(self.mean).div_(self.std))

    def extra_repr(self) -> str:
        return f"layer={self.layer}"


class Decoder(nn.Module):
    """Inverse network: relu3_1 features ``(N, 256, h, w)`` -> RGB ``(N, 3, 4h, 4w)`` in [0, 1]."""

    def __init__(self, instance_norm: bool = True):
        super().__init__()
        self.instance_norm = instance_norm

        def conv(cin, cout, last=False):
            block = [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, kernel_size=3)]
            if not last:
                if instance_norm:
                    block.append(nn.InstanceNorm2d(cout, affine=True))
                block.append(nn.ReLU(inplace=True))
            return block

        up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
        self.body = nn.Sequential(
            *conv(256, 128), up(),
            *conv(128, 128), *conv(128, 64), up(),
            *conv(64, 64), *conv(64, 3, last=True),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(cpu_layers.run(self.body, features))  # as the encoder: cpu_layers

    def extra_repr(self) -> str:
        return f"instance_norm={self.instance_norm}"

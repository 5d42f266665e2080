"""The networks: VGG encoder and decoder (networks), weights' lookup, cache, download and installation
(loading), the shipped decoder (weights/), CPU layer kernels. May import ops and _util; never pipeline or apps."""

from .loading import (ENV_VGG_WEIGHTS, VGG19_SLICE_SHA256, VGG19_URL, NoTrainedDecoderError, WeightsUnavailableError,
                      cache_dir, install_vgg_weights, load_decoder, load_encoder, packaged_decoder_path,
                      vgg_slice_digest, vgg_weights_status)
from .networks import IMAGENET_MEAN, IMAGENET_STD, LAYERS, Decoder, VGGEncoder

__all__ = ["VGGEncoder", "Decoder", "load_encoder", "load_decoder", "NoTrainedDecoderError", "WeightsUnavailableError",
           "VGG19_URL", "ENV_VGG_WEIGHTS", "cache_dir", "packaged_decoder_path", "install_vgg_weights",
           "vgg_weights_status", "VGG19_SLICE_SHA256"]

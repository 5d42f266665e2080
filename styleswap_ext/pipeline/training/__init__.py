"""Training of the inverse network f (relu3_1 features -> RGB), Chen & Schmidt 2016, §3.2: data, loss,
loop, checkpoints and the command's options. May import models, ops, _util and the pipeline's modules.

    styleswap train-decoder --content-dir DIR --style-dir DIR --out CKPT [options]
    torchrun --nproc_per_node N -m styleswap_ext train-decoder ...     (DistributedDataParallel)

The recipe and the optimiser: :mod:`.loop`; the loss, exactly: :mod:`.loss`; the data and its split:
:mod:`.data`; what a checkpoint holds: :mod:`.checkpoints`.
"""

from .checkpoints import CHECKPOINT_KEYS, export_weights, param_digest
from .data import ImageBank, TrainingError, iteration_generator, list_images, split_names
from .loop import train, validate
from .loss import DEFAULT_TV_WEIGHT, decoder_loss, make_targets, swap_function
from .options import add_arguments, check_arguments

__all__ = ["TrainingError", "split_names", "list_images", "ImageBank", "decoder_loss", "make_targets",
           "add_arguments", "train", "CHECKPOINT_KEYS", "param_digest", "export_weights"]

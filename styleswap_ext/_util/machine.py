"""Names of the machine a figure or a training run comes from (for JSON results and model cards)."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU's model name and core count, e.g. ``"AMD EPYC, 2 cores"``."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def device_name(device) -> str:
    """The GPU's name for a CUDA device, else ``"cpu: "`` and :func:`cpu_name`."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_name()}"

"""Choosing a device and seeding every random number generator."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["get_device", "set_seed"]

DEVICE_ENV = "TRANSFORMER_COURSE_DEVICE"


def get_device(preferred: str | torch.device | None = None) -> torch.device:
    """CUDA if available, then Apple's MPS, then the CPU.

    ``preferred`` (or the environment variable ``TRANSFORMER_COURSE_DEVICE``) overrides the
    choice, e.g. ``"cpu"`` to compare timings; asking for a device that is not there is an
    error rather than a silent fallback.
    """
    choice = preferred if preferred is not None else os.environ.get(DEVICE_ENV)
    if choice is not None:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {choice!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {choice!r} requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

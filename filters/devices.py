"""Where a model stage runs: the torch device and dtype from a stage's ``device``/``dtype`` options."""

from __future__ import annotations

from typing import Any

from winnow.errors import ConfigError

__all__ = ["torch_device_and_dtype"]


def torch_device_and_dtype(stage: str, device: str, dtype: str) -> tuple[Any, Any]:
    """``device``: ``cuda`` (a ConfigError when torch sees none), ``cpu`` or ``auto`` (CUDA when
    present); ``dtype``: a torch dtype name or ``auto`` (bfloat16 on CUDA, float32 on the CPU)."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{stage}.device", device, "cpu or auto", "torch sees no CUDA device here")
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    if dtype == "auto":
        dtype = "bfloat16" if dev.type == "cuda" else "float32"
    return dev, getattr(torch, dtype)

"""What the model stages share: where a model runs (the torch device and dtype from a stage's
``device``/``dtype`` options) and the checks of their common options (a local model directory,
a threshold or an exact kept fraction)."""

from __future__ import annotations

import math
import os
from typing import Any

from winnow.errors import ConfigError

__all__ = ["torch_device_and_dtype", "check_model_dir", "check_selection"]


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


def check_model_dir(stage: str, path: str, expected: str, saved_with: str) -> None:
    """``path`` must be an existing local directory with ``config.json`` (nothing downloads);
    ``expected`` says what belongs there, ``saved_with`` what to save beside the model."""
    key = f"{stage}.model_dir"
    if not path:
        raise ConfigError(key, path, expected)
    if not os.path.isdir(path):
        raise ConfigError(key, path, "an existing local directory",
                          f"nothing is downloaded: save the model and {saved_with} there first")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ConfigError(key, path, "a directory with config.json (saved with save_pretrained)")


def check_selection(stage: str, threshold: float | None, keep_fraction: float | None) -> None:
    """At most one of an absolute ``threshold`` (finite) and an exact ``keep_fraction`` in (0, 1]."""
    if threshold is not None and keep_fraction is not None:
        raise ConfigError(f"{stage}.keep_fraction", keep_fraction, f"null when {stage}.threshold is set",
                          "set one of the two")
    if threshold is not None and not math.isfinite(threshold):
        raise ConfigError(f"{stage}.threshold", threshold, "a finite number or null")
    if keep_fraction is not None and not 0.0 < keep_fraction <= 1.0:
        raise ConfigError(f"{stage}.keep_fraction", keep_fraction, "a fraction in (0, 1] or null")

"""Loading a run's config against the built-in stages (the usual entry point).

:func:`winnow.pipeline.config.load_config` takes the registry of stages as an argument, so the
config module knows no stage; this wrapper passes the built-in
:data:`~winnow.pipeline.stages.registry.STAGES` unless told otherwise.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from winnow.pipeline import config as _config
from winnow.pipeline.config import RunConfig
from winnow.pipeline.stages.registry import STAGES

__all__ = ["load_config", "STAGES"]


def load_config(
    path: str | None = None,
    *,
    registry: Mapping[str, Any] = STAGES,
    overrides: Sequence[str] = (),
    input: Sequence[str] | None = None,
    output: str | None = None,
    stages: Sequence[str] | None = None,
) -> RunConfig:
    """:func:`winnow.pipeline.config.load_config` with the built-in stages by default."""
    return _config.load_config(path, registry=registry, overrides=overrides, input=input, output=output,
                               stages=stages)

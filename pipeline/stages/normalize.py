"""``normalize``: Unicode normal form, control characters, whitespace; drops empty text."""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from winnow.filters.normalize import NormalizeConfig, Normalizer
from winnow.pipeline.stages.base import RecordStage
from winnow.pipeline.stages.spec import BuildContext, StageDecl

__all__ = ["DECLARATION"]


def _build(cfg: NormalizeConfig, ctx: BuildContext) -> beam.PTransform:
    return RecordStage("normalize", _Factory(cfg))


class _Factory:
    """Builds the pure stage on the worker (picklable; nothing heavy before ``setup``)."""

    def __init__(self, cfg: NormalizeConfig) -> None:
        self._cfg = cfg

    def __call__(self) -> Any:
        return Normalizer(self._cfg)


DECLARATION = StageDecl("normalize", NormalizeConfig, _build, reasons=Normalizer.reasons)

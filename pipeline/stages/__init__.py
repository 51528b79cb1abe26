"""Stage PTransforms; see :mod:`winnow.pipeline.stages.registry` for the list."""

from winnow.pipeline.stages import registry

__all__ = ["registry"]

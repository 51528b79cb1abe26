"""``audio``: decode, resample and measure audio records (:mod:`winnow.filters.audio`).

A per-record stage through the contract's :class:`~winnow.pipeline.stages.base.RecordStage`:
an ``audio_unreadable`` file is a reject of this stage; anything else a decoder raises is the
contract's dead letter, that record alone. Its report section shows duration, level and
silence histograms.
"""

from __future__ import annotations

from typing import Any, Mapping

import apache_beam as beam

from winnow.filters.audio import AUDIO_FIELDS, REASONS, AudioConfig, AudioFilter
from winnow.pipeline.stages.base import RecordStage, StageOutputs, explode
from winnow.pipeline.stages.spec import BuildContext, StageDecl
from winnow.pipeline.stages.stats import HistogramFn, linear_edges

__all__ = ["DECLARATION", "AudioStage", "NAME"]

NAME = "audio"

#: Histogram edges per measured column.
_HISTS = {
    "audio_duration": (0.0, 30.0, 30),
    "audio_rms_dbfs": (-80.0, 0.0, 40),
    "audio_silence_ratio": (0.0, 1.0, 20),
}


class _Factory:
    """Builds the filter on the worker (picklable)."""

    def __init__(self, cfg: AudioConfig) -> None:
        self._cfg = cfg

    def __call__(self) -> AudioFilter:
        return AudioFilter(self._cfg)


class AudioStage(beam.PTransform):
    """The ``audio`` stage: :class:`AudioFilter` over record batches, plus histograms."""

    def __init__(self, cfg: AudioConfig | None = None, batch_size: int = 16) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg or AudioConfig()
        self._batch = batch_size

    def expand(self, records: beam.PCollection) -> StageOutputs:
        out = records | "Filter" >> RecordStage(NAME, _Factory(self._cfg), self._batch)
        rows = explode(out.kept, "Rows")
        hists = []
        for col, (lo, hi, n) in _HISTS.items():
            hists.append(rows
                         | f"V_{col}" >> beam.FlatMap(lambda r, c=col: [r[c]] if r.get(c) is not None else [])
                         | f"H_{col}" >> beam.CombineGlobally(HistogramFn(linear_edges(lo, hi, n)))
                         | f"W_{col}" >> beam.Map(lambda h, c=col: {f"{c}_hist": h}))
        stats = hists | "Stats" >> beam.Flatten()
        return StageOutputs(kept=out.kept, rejected=out.rejected, dead=out.dead, stats=stats, timing=out.timing)


def _section(stats: Mapping[str, Any], examples: Any, config: Mapping[str, Any]) -> Any:
    from winnow.pipeline.stages.audio_report import audio_section

    return audio_section(stats, examples, config)


def _build(cfg: AudioConfig, ctx: BuildContext) -> beam.PTransform:
    return AudioStage(cfg)


DECLARATION = StageDecl(NAME, AudioConfig, _build, lambda cfg: AUDIO_FIELDS, REASONS, report=_section)

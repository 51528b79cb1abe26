"""``image_quality``: decode and verify every image under a pixel budget, and drop broken,
tiny, extreme-aspect, blank and blurred ones (:mod:`winnow.filters.image_quality`).

The pure filter runs through :class:`~winnow.pipeline.stages.base.RecordStage` (the guarded
mechanism: counts, rejects, dead letters, timing). Undecodable images are *rejects* with a
reason (the bytes are the record's problem); an exception the filter did not expect
dead-letters that record alone. Records without an image pass through with null columns.
Stats: histograms of sharpness (log10), entropy and the long side, for the report.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import apache_beam as beam

from winnow.filters.image_quality import FIELDS, REASONS, ImageQualityConfig, ImageQualityFilter
from winnow.pipeline.stages.base import RecordStage, StageOutputs, explode
from winnow.pipeline.stages.spec import BuildContext, StageDecl
from winnow.pipeline.stages.stats import HistogramFn, linear_edges

__all__ = ["DECLARATION", "ImageQualityStage", "NAME"]

NAME = "image_quality"


class _Factory:
    """Picklable: the filter is built on the worker."""

    def __init__(self, cfg: ImageQualityConfig) -> None:
        self._cfg = cfg

    def __call__(self) -> ImageQualityFilter:
        return ImageQualityFilter(self._cfg)


def _log10_sharpness(r: dict) -> list[float]:
    v = r.get("image_sharpness")
    return [] if v is None else [math.log10(v + 1.0)]


class ImageQualityStage(beam.PTransform):
    """The image checks over batches, plus their distributions."""

    def __init__(self, cfg: ImageQualityConfig | None = None, batch_size: int = 32) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg or ImageQualityConfig()
        self._batch_size = batch_size

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        out = records | "Check" >> RecordStage(NAME, _Factory(cfg), batch_size=self._batch_size)
        judged = (explode(out.kept, "KeptRows"), explode(out.rejected, "RejectedRows")) | "Judged" >> beam.Flatten()
        sharp = (judged | "Sharpness" >> beam.FlatMap(_log10_sharpness)
                 | "SharpHist" >> beam.CombineGlobally(HistogramFn(linear_edges(0.0, 5.0, 40)))
                 | "SharpWrap" >> beam.Map(lambda h: {"log10_sharpness_hist": h}))
        ent = (judged | "Entropy" >> beam.FlatMap(lambda r: [] if r.get("image_entropy") is None else [r["image_entropy"]])
               | "EntropyHist" >> beam.CombineGlobally(HistogramFn(linear_edges(0.0, 8.0, 32)))
               | "EntropyWrap" >> beam.Map(lambda h: {"entropy_hist": h}))
        params = records.pipeline | "Params" >> beam.Create([{"thresholds": {
            "max_pixels": cfg.max_pixels, "min_side": cfg.min_side, "max_aspect_ratio": cfg.max_aspect_ratio,
            "min_std": cfg.min_std, "min_entropy": cfg.min_entropy, "min_sharpness": cfg.min_sharpness,
            "analysis_side": cfg.analysis_side, "animated": cfg.animated,
            "reencode_format": cfg.reencode_format, "max_side": cfg.max_side}}])
        stats = (sharp, ent, params) | "Stats" >> beam.Flatten()
        return StageOutputs(kept=out.kept, rejected=out.rejected, dead=out.dead, stats=stats, timing=out.timing)


def image_quality_section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]],
                          config: Mapping[str, Any]) -> Any:
    """Report section: thresholds, sharpness and entropy histograms (rejected examples with
    thumbnails are in the report's examples for each ``image_quality_*`` reason)."""
    from winnow.pipeline.report import ReportSection, html_table, svg_histogram

    s = (stats.get("stage_stats") or {}).get(NAME)
    if not s:
        return None
    th = s.get("thresholds") or {}
    body = ["<p>Every image is opened header-first and refused over the pixel budget before decoding; "
            "undecodable, tiny, extreme-aspect, blank and blurred images are rejected with an "
            "<code>image_quality_*</code> reason (examples with thumbnails below, under each reason).</p>",
            html_table(["threshold", "value"], [(k, str(v)) for k, v in th.items()])]
    for key, title, x, line in (
            ("log10_sharpness_hist", "sharpness: log10(1 + variance of the Laplacian)", "log10 sharpness",
             math.log10(th["min_sharpness"] + 1.0) if th.get("min_sharpness") else None),
            ("entropy_hist", "grey-level entropy (bits)", "image_entropy", th.get("min_entropy") or None)):
        h = s.get(key)
        if isinstance(h, Mapping) and h.get("n"):
            body.append(svg_histogram(h, title=title, x_label=x, threshold=line))
    return ReportSection("Image quality", "".join(body), "sec-image-quality")


def _build(cfg: ImageQualityConfig, ctx: BuildContext) -> beam.PTransform:
    return ImageQualityStage(cfg)


DECLARATION = StageDecl(NAME, ImageQualityConfig, _build, lambda cfg: FIELDS, REASONS, report=image_quality_section)

"""The ``lang``, ``quality``, ``toxicity`` and ``pii`` stages: pure filters mapped with
:class:`RecordStage`, plus the distributions their report sections draw.

Each stage's stats come from the records it judged (kept plus its own rejects): language
counts and score histograms with the configured thresholds, PII counts per type.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import apache_beam as beam

from winnow.filters.lang import LangConfig, LangFilter
from winnow.filters.pii import PIIConfig, PIIFilter
from winnow.filters.quality import QualityConfig, QualityFilter
from winnow.filters.toxicity import ToxicityConfig, ToxicityFilter
from winnow.pipeline.batch import Records
from winnow.pipeline.stages.base import RecordStage, StageOutputs
from winnow.pipeline.stages.stats import HistogramFn, linear_edges
from winnow.pipeline.stages.filter_report import lang_section, pii_section, quality_section, toxicity_section
from winnow.pipeline.stages.spec import BuildContext, StageDecl

__all__ = ["LANG", "QUALITY", "TOXICITY", "PII", "FilterStage", "slim", "HEAVY_COLUMNS", "lang_stage",
           "quality_stage", "toxicity_stage", "pii_stage", "SumCountsFn"]


class SumCountsFn(beam.CombineFn):
    """Sums dicts of counts key by key; also counts inputs with a non-zero value per key."""

    def create_accumulator(self) -> tuple[dict, dict]:
        return {}, {}

    def add_input(self, acc: tuple[dict, dict], d: dict) -> tuple[dict, dict]:
        total, nz = acc
        for k, v in d.items():
            if v:
                total[k] = total.get(k, 0) + int(v)
                nz[k] = nz.get(k, 0) + 1
        return acc

    def merge_accumulators(self, accs: Iterable[tuple[dict, dict]]) -> tuple[dict, dict]:
        total: dict = {}
        nz: dict = {}
        for t, n in accs:
            for k, v in t.items():
                total[k] = total.get(k, 0) + v
            for k, v in n.items():
                nz[k] = nz.get(k, 0) + v
        return total, nz

    def extract_output(self, acc: tuple[dict, dict]) -> dict:
        return {"found": dict(sorted(acc[0].items())), "records": dict(sorted(acc[1].items()))}


def _hist(judged: beam.PCollection, column: str, edges: tuple[float, ...], label: str,
          transform: Callable[[float], float] | None = None) -> beam.PCollection:
    def values(batch: Records, c: str = column) -> list:
        vs = [r.get(c) for r in batch.rows]
        if transform is None:
            return [v for v in vs if v is not None]
        return [transform(v) for v in vs if v is not None]

    return (judged
            | f"{label}Values" >> beam.FlatMap(values)
            | f"{label}Hist" >> beam.CombineGlobally(HistogramFn(edges)))


#: Columns the stats never read; :func:`slim` leaves them out of the judged records.
HEAVY_COLUMNS = ("text", "image", "audio", "meta")


def slim(batch: Records) -> Records:
    """The batch without its payload columns (``has_text`` says whether ``text`` was set)."""
    return Records([{**{k: v for k, v in r.items() if k not in HEAVY_COLUMNS}, "has_text": r.get("text") is not None}
                    for r in batch.rows])


class FilterStage(beam.PTransform):
    """A :class:`RecordStage` plus stats computed from the records it judged.

    Args:
        name: the stage name.
        factory: builds the pure filter (in ``DoFn.setup``).
        batch_size: records handed to ``process_batch`` at once.
        hists: ``(stats key, column, edges, transform or None)`` histograms to compute.
        extra: ``fn(judged) -> PCollection of stat dicts`` for anything else; ``judged`` holds
            the stage's kept and rejected records without text or media (:func:`slim`).
        constants: stat values known at build time (thresholds), merged in.
    """

    def __init__(self, name: str, factory: Callable[[], Any], batch_size: int = 1,
                 hists: tuple = (), extra: Callable[[beam.PCollection], list[beam.PCollection]] | None = None,
                 constants: dict | None = None) -> None:
        super().__init__(label=name)
        self._name, self._factory, self._batch = name, factory, batch_size
        self._hists, self._extra, self._constants = hists, extra, constants or {}

    def expand(self, records: beam.PCollection) -> StageOutputs:
        out = records | "Filter" >> RecordStage(self._name, self._factory, batch_size=self._batch)
        # the stats see slim records (no text or media): a Flatten is a buffer on local runners
        judged = ((out.kept | "SlimKept" >> beam.Map(slim), out.rejected | "SlimRejected" >> beam.Map(slim))
                  | "Judged" >> beam.Flatten())
        parts = []
        for key, column, edges, transform in self._hists:
            h = _hist(judged, column, edges, f"H[{key}]", transform)
            parts.append(h | f"Wrap[{key}]" >> beam.Map(lambda v, k=key: {k: v}))
        if self._extra is not None:
            parts.extend(self._extra(judged))
        p = records.pipeline
        parts.append(p | "Constants" >> beam.Create([self._constants]))
        stats = parts | "StatsFlatten" >> beam.Flatten()
        return StageOutputs(kept=out.kept, rejected=out.rejected, dead=out.dead, stats=stats, timing=out.timing)


def _lang_counts(judged: beam.PCollection) -> list[beam.PCollection]:
    counts = (judged
              | "LangKey" >> beam.FlatMap(lambda b: [r.get("lang") or ("(none)" if r.get("has_text") else "(no text)")
                                                     for r in b.rows])
              | "LangCount" >> beam.combiners.Count.PerElement()
              | "LangList" >> beam.combiners.ToList()
              | "LangDict" >> beam.Map(lambda kv: {"languages": dict(sorted(kv, key=lambda x: (-x[1], x[0])))}))
    return [counts]


def lang_stage(cfg: LangConfig, ctx: BuildContext) -> beam.PTransform:
    return FilterStage(
        "lang", lambda: LangFilter(cfg), batch_size=1024,
        hists=(("score_hist", "lang_score", linear_edges(0, 1, 40), None),),
        extra=_lang_counts,
        constants={"thresholds": {"min_score": cfg.min_score}, "keep": list(cfg.keep),
                   "backend": cfg.backend},
    )


def quality_stage(cfg: QualityConfig, ctx: BuildContext) -> beam.PTransform:
    return FilterStage(
        "quality", lambda: QualityFilter(cfg), batch_size=1,
        hists=(
            ("words_hist", "quality_words", linear_edges(0, 4, 40), lambda v: math.log10(v + 1)),
            ("mean_word_length_hist", "quality_mean_word_length", linear_edges(0, 20, 40), None),
            ("alpha_ratio_hist", "quality_alpha_ratio", linear_edges(0, 1, 40), None),
            ("line_punct_ratio_hist", "quality_line_punct_ratio", linear_edges(0, 1, 40), None),
        ),
        constants={"thresholds": {
            "log10_words": math.log10(cfg.min_words + 1), "min_mean_word_length": cfg.min_mean_word_length,
            "min_alpha_words_ratio": cfg.min_alpha_words_ratio,
            "fineweb_min_line_punct_ratio": cfg.fineweb_min_line_punct_ratio},
            "rules": {"gopher_quality": cfg.gopher_quality, "gopher_repetition": cfg.gopher_repetition,
                      "c4": cfg.c4, "fineweb": cfg.fineweb}},
    )


def toxicity_stage(cfg: ToxicityConfig, ctx: BuildContext) -> beam.PTransform:
    return FilterStage(
        "toxicity", lambda: ToxicityFilter(cfg), batch_size=64,
        hists=(("score_hist", "toxicity_score", linear_edges(0, 1, 40), None),),
        constants={"thresholds": {"max_score": cfg.threshold}, "backend": cfg.backend},
    )


def _pii_counts(cfg: PIIConfig) -> Callable[[beam.PCollection], list[beam.PCollection]]:
    cols = tuple(f"pii_{t}" for t in PIIFilter.all_types(cfg))

    def extra(judged: beam.PCollection) -> list[beam.PCollection]:
        sums = (judged
                | "PiiCounts" >> beam.FlatMap(lambda b: [{c[4:]: r.get(c) or 0 for c in cols} for r in b.rows])
                | "PiiSum" >> beam.CombineGlobally(SumCountsFn()))
        return [sums | "PiiWrap" >> beam.Map(lambda d: {"pii": d})]

    return extra


def pii_stage(cfg: PIIConfig, ctx: BuildContext) -> beam.PTransform:
    return FilterStage(
        "pii", lambda: PIIFilter(cfg), batch_size=1, extra=_pii_counts(cfg),
        constants={"actions": {t: getattr(cfg, t) for t in PIIFilter.all_types(cfg)}},
    )


LANG = StageDecl("lang", LangConfig, lang_stage, lambda c: LangFilter.FIELDS, LangFilter.reasons, report=lang_section)
QUALITY = StageDecl("quality", QualityConfig, quality_stage, lambda c: QualityFilter.FIELDS, QualityFilter.reasons,
                    report=quality_section)
TOXICITY = StageDecl("toxicity", ToxicityConfig, toxicity_stage, lambda c: ToxicityFilter.FIELDS,
                     ToxicityFilter.reasons, report=toxicity_section)
PII = StageDecl("pii", PIIConfig, pii_stage, PIIFilter.fields_for, PIIFilter.reasons, report=pii_section)

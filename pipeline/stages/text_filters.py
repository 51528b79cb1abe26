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
           "quality_stage", "toxicity_stage", "pii_stage", "SumCountsFn",
           "FilterStatsFn", "BatchCounts", "LangCounts", "ColumnCounts"]


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


#: Columns the stats never read; :func:`slim` leaves them out of the judged records.
HEAVY_COLUMNS = ("text", "image", "audio", "meta")


def slim(batch: Records) -> Records:
    """The batch without its payload columns (``has_text`` says whether ``text`` was set)."""
    return Records([{**{k: v for k, v in r.items() if k not in HEAVY_COLUMNS}, "has_text": r.get("text") is not None}
                    for r in batch.rows])


class BatchCounts:
    """A stat of a :class:`FilterStage` counted per batch of judged records, then merged.

    A subclass defines ``create() -> acc``, ``add_rows(acc, rows) -> acc`` (``rows``: the record
    dicts of one kept or rejected batch, text and media included), ``merge(accs) -> acc`` (leaves
    its inputs unchanged) and ``extract(acc) -> dict`` (one stat dict, e.g. ``{"languages": ...}``).
    """

    def create(self) -> Any:
        raise NotImplementedError

    def add_rows(self, acc: Any, rows: list[dict]) -> Any:
        raise NotImplementedError

    def merge(self, accs: list) -> Any:
        raise NotImplementedError

    def extract(self, acc: Any) -> dict:
        raise NotImplementedError


class LangCounts(BatchCounts):
    """``{"languages": {lang: records}}``, most first: ``(none)`` for a record with text and no
    language, ``(no text)`` for a record without text."""

    def create(self) -> dict:
        return {}

    def add_rows(self, acc: dict, rows: list[dict]) -> dict:
        for r in rows:
            k = r.get("lang") or ("(none)" if r.get("text") is not None else "(no text)")
            acc[k] = acc.get(k, 0) + 1
        return acc

    def merge(self, accs: list[dict]) -> dict:
        out: dict = {}
        for a in accs:
            for k, v in a.items():
                out[k] = out.get(k, 0) + v
        return out

    def extract(self, acc: dict) -> dict:
        return {"languages": dict(sorted(acc.items(), key=lambda x: (-x[1], x[0])))}


class ColumnCounts(BatchCounts):
    """``{key: SumCountsFn's result}`` over integer columns: per name, the column's sum and the
    records where it is non-zero.

    Args:
        key: the stat key.
        columns: ``(name, column)`` pairs.
    """

    def __init__(self, key: str, columns: Iterable[tuple[str, str]]) -> None:
        self._key, self._columns = key, tuple(columns)

    def create(self) -> tuple[dict, dict]:
        return {}, {}

    def add_rows(self, acc: tuple[dict, dict], rows: list[dict]) -> tuple[dict, dict]:
        total, nz = acc
        for r in rows:
            for name, column in self._columns:
                v = r.get(column)
                if v:
                    total[name] = total.get(name, 0) + int(v)
                    nz[name] = nz.get(name, 0) + 1
        return acc

    def merge(self, accs: list[tuple[dict, dict]]) -> tuple[dict, dict]:
        return SumCountsFn().merge_accumulators(accs)

    def extract(self, acc: tuple[dict, dict]) -> dict:
        return {self._key: SumCountsFn().extract_output(acc)}


class FilterStatsFn(beam.CombineFn):
    """All the stats of one :class:`FilterStage`, from its kept and rejected batches.

    :meth:`batch` turns one batch into a partial accumulator (every histogram and count of the
    stage at once); the combiner's inputs are those partials, one per batch. The output is the
    list of stat dicts the stage reports: ``{key: histogram}`` per histogram, then each count's
    dict.

    A histogram's ``sum`` (and ``mean``) is the :func:`math.fsum` of its per-batch sums (each
    added in record order), so it does not depend on the order the runner merges batches in.

    Args:
        hists: ``(stats key, column, edges, transform or None)``: a :class:`HistogramFn` of the
            column's values that are not None (``transform`` applied to them).
        counts: :class:`BatchCounts` to compute.
    """

    def __init__(self, hists: tuple = (), counts: tuple = ()) -> None:
        self._hists = tuple((key, column, HistogramFn(edges), transform) for key, column, edges, transform in hists)
        self._counts = tuple(counts)

    def create_accumulator(self) -> list:
        # histogram accumulators, count accumulators, per histogram the sums of the batches
        return [[h.create_accumulator() for _, _, h, _ in self._hists], [c.create() for c in self._counts],
                [[] for _ in self._hists]]

    def batch(self, batch: Records) -> list:
        """The partial accumulator of one batch of judged records."""
        rows = batch.rows
        hists, counts, sums = self.create_accumulator()
        for i, (_, column, h, transform) in enumerate(self._hists):
            values = [v for v in [r.get(column) for r in rows] if v is not None]
            h.add_inputs(hists[i], values if transform is None else [transform(v) for v in values])
            if values:
                sums[i].append(h.extract_output(hists[i])["sum"])
        for j, c in enumerate(self._counts):
            counts[j] = c.add_rows(counts[j], rows)
        return [hists, counts, sums]

    def add_input(self, acc: list, partial: list) -> list:
        return self.merge_accumulators([acc, partial])

    def merge_accumulators(self, accs: Iterable[list]) -> list:
        accs = list(accs)
        sums = [list(s) for s in accs[0][2]]
        for a in accs[1:]:
            for s, more in zip(sums, a[2]):
                s.extend(more)
        return [[h.merge_accumulators([a[0][i] for a in accs]) for i, (_, _, h, _) in enumerate(self._hists)],
                [c.merge([a[1][j] for a in accs]) for j, c in enumerate(self._counts)],
                sums]

    def extract_output(self, acc: list) -> list[dict]:
        out = []
        for (key, _, h, _), hacc, sums in zip(self._hists, acc[0], acc[2]):
            d = h.extract_output(hacc)
            d["sum"] = _sum(sums)
            d["mean"] = d["sum"] / d["n"] if d["n"] else None
            out.append({key: d})
        return out + [c.extract(cacc) for c, cacc in zip(self._counts, acc[1])]


def _sum(values: list[float]) -> float:
    """The sum of ``values`` whatever their order (inf or NaN among them: the plain sum)."""
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):
        return sum(sorted(values, key=repr), 0.0)


class FilterStage(beam.PTransform):
    """A :class:`RecordStage` plus stats computed from the records it judged.

    Histograms and counts are computed per batch of kept and rejected records (one small
    partial result per batch, merged by :class:`FilterStatsFn`), not one Beam element per record.

    Args:
        name: the stage name.
        factory: builds the pure filter (in ``DoFn.setup``).
        batch_size: records handed to ``process_batch`` at once.
        hists: ``(stats key, column, edges, transform or None)`` histograms to compute.
        extra: ``fn(judged) -> PCollection of stat dicts`` for anything else; ``judged`` holds
            the stage's kept and rejected records without text or media (:func:`slim`). It costs
            a copy of every record: prefer ``counts``.
        constants: stat values known at build time (thresholds), merged in.
        counts: :class:`BatchCounts` to compute with the histograms.
    """

    def __init__(self, name: str, factory: Callable[[], Any], batch_size: int = 1,
                 hists: tuple = (), extra: Callable[[beam.PCollection], list[beam.PCollection]] | None = None,
                 constants: dict | None = None, counts: tuple = ()) -> None:
        super().__init__(label=name)
        self._name, self._factory, self._batch = name, factory, batch_size
        self._hists, self._extra, self._constants = hists, extra, constants or {}
        self._counts = tuple(counts)

    def expand(self, records: beam.PCollection) -> StageOutputs:
        out = records | "Filter" >> RecordStage(self._name, self._factory, batch_size=self._batch)
        fn = FilterStatsFn(self._hists, self._counts)
        constants = self._constants
        # one partial per batch, made before the Flatten (a Flatten of the records themselves
        # would be a buffer on local runners)
        partials = ((out.kept | "StatsKept" >> beam.Map(fn.batch),
                     out.rejected | "StatsRejected" >> beam.Map(fn.batch))
                    | "StatsPartials" >> beam.Flatten())
        parts = [partials
                 | "StatsCombine" >> beam.CombineGlobally(fn)
                 | "StatsDicts" >> beam.FlatMap(lambda dicts: [*dicts, constants])]
        if self._extra is not None:
            judged = ((out.kept | "SlimKept" >> beam.Map(slim), out.rejected | "SlimRejected" >> beam.Map(slim))
                      | "Judged" >> beam.Flatten())
            parts.extend(self._extra(judged))
        stats = parts | "StatsFlatten" >> beam.Flatten()
        return StageOutputs(kept=out.kept, rejected=out.rejected, dead=out.dead, stats=stats, timing=out.timing)


def lang_stage(cfg: LangConfig, ctx: BuildContext) -> beam.PTransform:
    return FilterStage(
        "lang", lambda: LangFilter(cfg), batch_size=1024,
        hists=(("score_hist", "lang_score", linear_edges(0, 1, 40), None),),
        counts=(LangCounts(),),
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


def pii_stage(cfg: PIIConfig, ctx: BuildContext) -> beam.PTransform:
    return FilterStage(
        "pii", lambda: PIIFilter(cfg), batch_size=1,
        counts=(ColumnCounts("pii", ((t, f"pii_{t}") for t in PIIFilter.all_types(cfg))),),
        constants={"actions": {t: getattr(cfg, t) for t in PIIFilter.all_types(cfg)}},
    )


LANG = StageDecl("lang", LangConfig, lang_stage, lambda c: LangFilter.FIELDS, LangFilter.reasons, report=lang_section)
QUALITY = StageDecl("quality", QualityConfig, quality_stage, lambda c: QualityFilter.FIELDS, QualityFilter.reasons,
                    report=quality_section)
TOXICITY = StageDecl("toxicity", ToxicityConfig, toxicity_stage, lambda c: ToxicityFilter.FIELDS,
                     ToxicityFilter.reasons, report=toxicity_section)
PII = StageDecl("pii", PIIConfig, pii_stage, PIIFilter.fields_for, PIIFilter.reasons, report=pii_section)

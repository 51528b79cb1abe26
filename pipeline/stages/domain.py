"""``domain``: KL / DSIR scoring against reference domains, then top-fraction selection.

Graph (all global steps are Beam steps, nothing runs on the driver):

1. reference feature counts per domain: read the configured files, featurize, CombinePerKey sum;
2. background counts (``background: corpus``): featurize the incoming records, CombineGlobally;
3. score every record (both of the above as side inputs);
4. the selection cut: the exact k-th smallest ``(score, hash(id, source))`` key, k = the keep
   fraction of the scored records, by a radix select in two combiner passes (counts per score
   prefix, then the keys of the one prefix that holds rank k; see
   :func:`winnow.filters.domain.locate_rank`). Counts add up the same however the data is
   partitioned, so the cut, and with it the shards, are identical on every runner and worker
   count; ties on the score break by the hash;
5. keep records whose key is at or below the cut, reject the rest as ``domain_below_threshold``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import apache_beam as beam
import numpy as np
import pyarrow as pa

from winnow.errors import InputError
from winnow.filters.domain import (
    DomainConfig,
    DomainScorer,
    domain_fields,
    domain_verdict,
    featurize,
    keep_count,
    locate_rank,
    score_prefix,
    read_reference_texts,
    selection_key,
)
from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageFn, StageOutputs, explode, run_step
from winnow.pipeline.stages.stats import HistogramFn, linear_edges
from winnow.filters.domain import REASON_BELOW, REASON_NO_WORDS
from winnow.pipeline.stages.domain_report import domain_section
from winnow.pipeline.stages.spec import BuildContext, StageDecl

__all__ = ["DECLARATION", "DomainStage", "SumCountsFn", "PrefixCountFn", "fields"]

NAME = "domain"


def fields(cfg: DomainConfig) -> tuple[pa.Field, ...]:
    return domain_fields(cfg)


class SumCountsFn(beam.CombineFn):
    """Sum of feature-count vectors (float64 arrays of length ``buckets``)."""

    def __init__(self, buckets: int) -> None:
        self._buckets = buckets

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(self._buckets, dtype=np.float64)

    def add_input(self, acc: np.ndarray, counts: np.ndarray) -> np.ndarray:
        acc += counts
        return acc

    def merge_accumulators(self, accs: Iterable[np.ndarray]) -> np.ndarray:
        accs = iter(accs)
        out = np.array(next(accs), dtype=np.float64)
        for a in accs:
            out += a
        return out

    def extract_output(self, acc: np.ndarray) -> np.ndarray:
        return acc


class PrefixCountFn(beam.CombineFn):
    """Sparse counts of selection keys per score prefix: ``[(prefix, count), ...]`` sorted."""

    def create_accumulator(self) -> dict[int, int]:
        return {}

    def add_input(self, acc: dict[int, int], key: tuple[float, int]) -> dict[int, int]:
        p = score_prefix(key[0])
        acc[p] = acc.get(p, 0) + 1
        return acc

    def merge_accumulators(self, accs: Iterable[dict[int, int]]) -> dict[int, int]:
        out: dict[int, int] = {}
        for a in accs:
            for p, c in a.items():
                out[p] = out.get(p, 0) + c
        return out

    def extract_output(self, acc: dict[int, int]) -> list[tuple[int, int]]:
        return sorted(acc.items())


class _ExactCut(beam.PTransform):
    def __init__(self, fraction: float) -> None:
        super().__init__()
        self._fraction = fraction

    def expand(self, keys: beam.PCollection) -> beam.PCollection:
        return _exact_cut(keys, self._fraction)


def _exact_cut(keys: beam.PCollection, fraction: float) -> beam.PCollection:
    """The k-th smallest key (k = ``keep_count(n, fraction)``) as a one-element PCollection."""
    counts = keys | "PrefixCounts" >> beam.CombineGlobally(PrefixCountFn())

    def where(pc: list[tuple[int, int]]) -> list[tuple[int, int]]:
        loc = locate_rank(pc, keep_count(sum(c for _, c in pc), fraction))
        return [loc] if loc is not None else []

    target = counts | "Locate" >> beam.FlatMap(where)
    in_bin = keys | "InBin" >> beam.FlatMap(
        lambda k, loc: [k] if loc and score_prefix(k[0]) == loc[0][0] else [], loc=beam.pvalue.AsList(target))

    def pick(bin_keys: list, loc: list) -> list:
        return [sorted(bin_keys)[loc[0][1] - 1]] if loc else []

    return (
        in_bin
        | "BinKeys" >> beam.combiners.ToList()
        | "Pick" >> beam.FlatMap(pick, loc=beam.pvalue.AsList(target))
    )


class _BatchCounts(beam.DoFn):
    """Feature counts of many texts summed per bundle (one array per bundle, not per text)."""

    def __init__(self, cfg: DomainConfig, keyed: bool) -> None:
        self._cfg = cfg
        self._keyed = keyed

    def start_bundle(self) -> None:
        self._acc: dict[Any, np.ndarray] = {}

    def process(self, element: Any) -> None:
        if self._keyed:
            self._add(*element)
        else:
            mods = self._cfg.modalities
            for r in element.rows:
                self._add(None, r.get("text") if r.get("modality") in mods else None)

    def _add(self, key: Any, text: str | None) -> None:
        cfg = self._cfg
        if text is None:
            return
        f = featurize(text, cfg.buckets, cfg.bigrams, cfg.max_chars)
        if len(f):
            acc = self._acc.get(key)
            if acc is None:
                acc = self._acc[key] = np.zeros(cfg.buckets, dtype=np.float64)
            np.add.at(acc, f, 1.0)

    def finish_bundle(self) -> Iterable[Any]:
        from apache_beam.transforms.window import GlobalWindows

        for key, acc in sorted(self._acc.items(), key=lambda kv: str(kv[0])):
            yield GlobalWindows.windowed_value((key, acc) if self._keyed else acc)
        self._acc = {}


class _ScoreFn(StageFn):
    def __init__(self, cfg: DomainConfig) -> None:
        super().__init__(NAME, last=False)
        self._cfg = cfg
        self._scorer: DomainScorer | None = None

    def _ready(self, refs: dict, background: list) -> None:
        missing = [n for n in self._cfg.names if n not in refs]
        if missing:  # fails the run: every record would be scored against nothing
            raise InputError(f"domain references {missing} hold no text (empty files, or no "
                             f"'text_field' in their JSON lines); check domain.references")
        self._scorer = DomainScorer(self._cfg, refs, background[0] if background else None)

    def process(self, batch: Any, refs: dict, background: list) -> Iterable[Any]:
        if self._scorer is None:
            self._ready(refs, background)  # outside the guard: a missing reference fails the run
        return super().process(batch, refs, background)

    def compute(self, rows: list[dict], refs: dict, background: list) -> list[Any]:
        return [self._scorer.annotate(r) for r in rows]

    def route(self, row: dict, ann: Any, out: Emit) -> None:
        row = dict(row)
        if ann:
            row.update(ann)
        out.keep(row)


class _SelectFn(StageFn):
    def __init__(self, cfg: DomainConfig) -> None:
        super().__init__(NAME, first=False, fields=domain_fields(cfg))
        self._cfg = cfg

    def compute(self, rows: list[dict], cut: list) -> list[Any]:
        return [domain_verdict(r, self._cfg, cut[0] if cut else None) for r in rows]

    def route(self, row: dict, verdict: Any, out: Emit) -> None:
        if verdict.keep:
            out.keep(row)
        else:
            out.reject(row, verdict.reason)


def _check_references(cfg: DomainConfig) -> None:
    import fsspec

    for ref in cfg.references:
        for pattern in ref.paths:
            if not fsspec.core.get_fs_token_paths(pattern)[2]:
                raise InputError(f"domain reference {ref.name!r}: {pattern} matches no file; check domain.references")


def _hist_edges(cfg: DomainConfig) -> tuple[float, ...]:
    # KL is at most log(1 / smallest smoothed probability): about 20 nats at the defaults.
    if cfg.score == "kl":
        return linear_edges(0.0, 24.0, cfg.hist_bins)
    return linear_edges(-12.0, 12.0, cfg.hist_bins)


class DomainStage(beam.PTransform):
    """Score records against reference domains and keep the best fraction (or a threshold)."""

    def __init__(self, cfg: DomainConfig) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg
        _check_references(cfg)

    def expand(self, records: beam.PCollection) -> StageOutputs:
        cfg = self._cfg
        p = records.pipeline
        side = beam.pvalue
        refs = (
            p
            | "RefSpecs" >> beam.Create([(r.name, i) for i, r in enumerate(cfg.references)])
            | "RefTexts" >> beam.FlatMap(lambda ni, refs=cfg.references: ((ni[0], t) for t in read_reference_texts(refs[ni[1]])))
            | "RefCounts" >> beam.ParDo(_BatchCounts(cfg, keyed=True))
            | "RefSum" >> beam.CombinePerKey(SumCountsFn(cfg.buckets))
        )
        if cfg.background == "corpus":
            background = (
                records
                | "BgCounts" >> beam.ParDo(_BatchCounts(cfg, keyed=False))
                | "BgSum" >> beam.CombineGlobally(SumCountsFn(cfg.buckets))
            )
        else:
            background = p | "NoBackground" >> beam.Create([])
        scored = run_step(records, "Score", _ScoreFn(cfg), side.AsDict(refs), side.AsList(background))
        keys = scored.kept | "Key" >> beam.FlatMap(
            lambda b: [k for r in b.rows if (k := selection_key(r, cfg)) is not None])
        if cfg.threshold is None:
            cut = keys | "Cut" >> _ExactCut(cfg.keep_fraction)
        else:
            cut = p | "NoCut" >> beam.Create([])
        selected = run_step(scored.kept, "Select", _SelectFn(cfg), side.AsList(cut))
        stats = _stats(cfg, explode(scored.kept, "ScoredRows"), explode(selected.kept, "KeptRows"), keys, cut)
        return StageOutputs(kept=selected.kept, rejected=selected[REJECTED],
                            dead=(scored[DEAD], selected[DEAD]) | "Dead" >> beam.Flatten(), stats=stats,
                            timing=(scored[TIMING], selected[TIMING]))


def _score_of(r: dict, cfg: DomainConfig) -> float | None:
    return r.get("domain_kl") if cfg.score == "kl" else r.get("domain_dsir")


def _stats(cfg: DomainConfig, scored: beam.PCollection, kept: beam.PCollection, keys: beam.PCollection,
           cut: beam.PCollection) -> beam.PCollection:
    edges = _hist_edges(cfg)
    hist = (
        scored
        | "ScoredOnly" >> beam.Filter(lambda r: r.get("domain_kl") is not None)
        | "ScoreValue" >> beam.Map(lambda r: _score_of(r, cfg))
        | "ScoreHist" >> beam.CombineGlobally(HistogramFn(edges))
        | "ScoreHistWrap" >> beam.Map(lambda h: {"score_hist": h})
    )
    mix_all = (
        scored
        | "MixAllKey" >> beam.FlatMap(lambda r: [r["domain"]] if r.get("domain") else [])
        | "MixAll" >> beam.combiners.Count.PerElement()
        | "MixAllList" >> beam.combiners.ToList()
        | "MixAllWrap" >> beam.Map(lambda kv: {"mix_scored": dict(sorted(kv))})
    )
    mix_kept = (
        kept
        | "MixKeptKey" >> beam.FlatMap(lambda r: [r["domain"]] if r.get("domain") else [])
        | "MixKept" >> beam.combiners.Count.PerElement()
        | "MixKeptList" >> beam.combiners.ToList()
        | "MixKeptWrap" >> beam.Map(lambda kv: {"mix_kept": dict(sorted(kv))})
    )
    n_scored = keys | "CountScored" >> beam.combiners.Count.Globally()

    def summary(n: int, cut: list) -> dict:
        c = cut[0] if cut else None
        value: float | None
        if cfg.threshold is not None:
            value = cfg.threshold
        elif c is None or not math.isfinite(c[0]):
            value = None
        else:
            value = c[0] if cfg.score == "kl" else -c[0]
        return {"selection": {
            "score": cfg.score, "keep_fraction": cfg.keep_fraction, "threshold": cfg.threshold,
            "cut": value, "scored": n, "domains": list(cfg.names), "select_domain": cfg.select_domain,
            "background": cfg.background,
        }}

    sel = n_scored | "Summary" >> beam.Map(summary, cut=beam.pvalue.AsList(cut))
    return (hist, mix_all, mix_kept, sel) | "DomainStats" >> beam.Flatten()


def _build(cfg: DomainConfig, ctx: BuildContext) -> beam.PTransform:
    return DomainStage(cfg)


DECLARATION = StageDecl(NAME, DomainConfig, _build, domain_fields, (REASON_BELOW, REASON_NO_WORDS),
                        report=domain_section)

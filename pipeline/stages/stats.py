"""Distributions a stage reports: combiners whose results reach stats.json and report.html.

A stage returns ``StageOutputs(..., stats=pcoll)`` where ``pcoll`` holds JSON-able dicts
(usually one, from a combiner). The pipeline gathers them per stage and ``Finalize`` merges
them into ``stats.json["stage_stats"][stage]``; report sections read them from there. Counts
are computed as data, so they are exact on every runner.

Example::

    scores = kept_and_rejected | beam.Map(lambda r: r["quality_score"])
    hist = scores | beam.CombineGlobally(HistogramFn(edges=linear_edges(0, 1, 20)))
    stats = hist | beam.Map(lambda h: {"score_hist": h})
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Iterable, Sequence

import apache_beam as beam

__all__ = ["HistogramFn", "linear_edges", "log_edges", "histogram_stats", "merge_stat_dicts"]


def linear_edges(lo: float, hi: float, bins: int) -> tuple[float, ...]:
    """``bins + 1`` evenly spaced edges from ``lo`` to ``hi``."""
    if not (bins >= 1 and math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"linear_edges needs hi > lo and bins >= 1, got lo={lo}, hi={hi}, bins={bins}")
    w = (hi - lo) / bins
    return tuple(lo + i * w for i in range(bins)) + (hi,)


def log_edges(lo: float, hi: float, bins: int) -> tuple[float, ...]:
    """``bins + 1`` geometrically spaced edges from ``lo`` > 0 to ``hi``."""
    if not (bins >= 1 and 0 < lo < hi):
        raise ValueError(f"log_edges needs 0 < lo < hi and bins >= 1, got lo={lo}, hi={hi}, bins={bins}")
    r = (hi / lo) ** (1.0 / bins)
    return tuple(lo * r**i for i in range(bins)) + (hi,)


class HistogramFn(beam.CombineFn):
    """Fixed-edge histogram of numbers, plus count, sum, min and max.

    Values below the first edge land in the first bin and values above the last in the last
    bin (``under`` and ``over`` count them); NaN and None are counted in ``missing``. The result
    is ``{"edges", "counts", "n", "sum", "min", "max", "mean", "under", "over", "missing"}``,
    which :func:`winnow.pipeline.report.svg_histogram` draws directly.
    """

    def __init__(self, edges: Sequence[float]) -> None:
        edges = tuple(float(e) for e in edges)
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"HistogramFn needs at least two increasing edges, got {edges!r}")
        self._edges = edges

    def create_accumulator(self) -> list:
        # counts..., n, sum, min, max, under, over, missing
        return [0] * (len(self._edges) - 1) + [0, 0.0, math.inf, -math.inf, 0, 0, 0]

    def add_input(self, acc: list, value: Any) -> list:
        nb = len(self._edges) - 1
        if value is None or (isinstance(value, float) and math.isnan(value)):
            acc[nb + 6] += 1
            return acc
        v = float(value)
        i = bisect.bisect_right(self._edges, v) - 1
        if i < 0:
            i = 0
            acc[nb + 4] += 1
        elif i >= nb:
            if v > self._edges[-1]:
                acc[nb + 5] += 1
            i = nb - 1
        acc[i] += 1
        acc[nb] += 1
        acc[nb + 1] += v
        acc[nb + 2] = min(acc[nb + 2], v)
        acc[nb + 3] = max(acc[nb + 3], v)
        return acc

    def add_inputs(self, acc: list, values: Iterable[Any]) -> list:
        """:meth:`add_input` of each value in turn (same bins, counts, min and max, and the sum
        added in the same order), without a call per value: for a batch of values at once."""
        edges = self._edges
        nb = len(edges) - 1
        hi = edges[-1]
        n, s, lo_v, hi_v = acc[nb], acc[nb + 1], acc[nb + 2], acc[nb + 3]
        under, over, missing = acc[nb + 4], acc[nb + 5], acc[nb + 6]
        bisect_right, isnan = bisect.bisect_right, math.isnan
        for value in values:
            if value is None or (isinstance(value, float) and isnan(value)):
                missing += 1
                continue
            v = float(value)
            i = bisect_right(edges, v) - 1
            if i < 0:
                i = 0
                under += 1
            elif i >= nb:
                if v > hi:
                    over += 1
                i = nb - 1
            acc[i] += 1
            n += 1
            s += v
            if v < lo_v:
                lo_v = v
            if v > hi_v:
                hi_v = v
        acc[nb], acc[nb + 1], acc[nb + 2], acc[nb + 3] = n, s, lo_v, hi_v
        acc[nb + 4], acc[nb + 5], acc[nb + 6] = under, over, missing
        return acc

    def merge_accumulators(self, accs: Iterable[list]) -> list:
        accs = iter(accs)
        out = list(next(accs))
        nb = len(self._edges) - 1
        for a in accs:
            for i in range(nb + 2):
                out[i] += a[i]
            out[nb + 2] = min(out[nb + 2], a[nb + 2])
            out[nb + 3] = max(out[nb + 3], a[nb + 3])
            for i in (nb + 4, nb + 5, nb + 6):
                out[i] += a[i]
        return out

    def extract_output(self, acc: list) -> dict[str, Any]:
        nb = len(self._edges) - 1
        n = acc[nb]
        return {
            "edges": list(self._edges),
            "counts": list(acc[:nb]),
            "n": n,
            "sum": acc[nb + 1],
            "min": acc[nb + 2] if n else None,
            "max": acc[nb + 3] if n else None,
            "mean": acc[nb + 1] / n if n else None,
            "under": acc[nb + 4],
            "over": acc[nb + 5],
            "missing": acc[nb + 6],
        }


def histogram_stats(values: beam.PCollection, key: str, edges: Sequence[float], label: str = "") -> beam.PCollection:
    """``values`` (numbers) -> one dict ``{key: histogram}`` for ``StageOutputs.stats``."""
    label = label or f"Hist[{key}]"
    return (
        values
        | f"{label}Combine" >> beam.CombineGlobally(HistogramFn(edges))
        | f"{label}Wrap" >> beam.Map(lambda h, k=key: {k: h})
    )


def merge_stat_dicts(dicts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge a stage's stat dicts (later keys win; nested dicts merge one level deep)."""
    out: dict[str, Any] = {}
    for d in dicts:
        for k, v in d.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = {**out[k], **v}
            else:
                out[k] = v
    return out

"""``exact_dedup``: group records by a content hash, keep the smallest (id, source) of each group.

Only keys are shuffled: each record gives ``(content hash, (id, source))``; a GroupByKey
finds the groups with more than one member and decides their survivor; those decisions
(one small entry per member of a duplicate group) reach the records as a side input
looked up by (id, source). The records themselves stay in their batches and are never
grouped, so the shuffle carries about 150 bytes per record whatever the document size.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import pyarrow as pa

from winnow.filters.exact import ExactDedupConfig, exact_key, pick_survivor
from winnow.pipeline.stages.base import DEAD, REJECTED, TIMING, Emit, StageFn, StageOutputs, run_step
from winnow.pipeline.stages.spec import BuildContext, StageDecl

__all__ = ["DECLARATION", "ExactDedup", "FIELDS", "REASON", "NAME"]

NAME = "exact_dedup"
REASON = "exact_dedup_duplicate"
#: The kept record of a group says how many copies there were (1 = unique).
FIELDS = (pa.field("exact_dup_count", pa.int64(), nullable=True),)
_KEYS = "keys"


class _KeyFn(StageFn):
    def __init__(self, cfg: ExactDedupConfig) -> None:
        super().__init__(NAME, last=False)
        self._cfg = cfg

    def compute(self, rows: list[dict], *side: Any) -> Sequence[Any]:
        return [exact_key(r, self._cfg) for r in rows]

    def route(self, row: dict, key: str, out: Emit) -> None:
        out.keep(row)
        out.emit(_KEYS, (key, (row["id"], row["source"])))


def _decide(element: tuple[str, Iterable[tuple[str, str]]]) -> Iterator[tuple[tuple[str, str], tuple]]:
    """For a group of two or more: every member -> (survivor id, survivor source, group size).
    Two passes over the group (re-iterable on every runner), never held in memory."""
    _, members = element
    n = 0

    def keys() -> Iterator[tuple[str, str]]:
        nonlocal n
        for m in members:
            n += 1
            yield m

    best = pick_survivor(keys())
    if n < 2:
        return
    emitted = False
    for m in members:
        if m == best and not emitted:
            emitted = True
            yield m, (None, None, n)  # the survivor: kept, with the group size
        else:
            yield m, (best[0], best[1], n)


class _ApplyFn(StageFn):
    def __init__(self) -> None:
        super().__init__(NAME, first=False, fields=FIELDS)

    def compute(self, rows: list[dict], decided: dict) -> Sequence[Any]:
        return [decided.get((r["id"], r["source"])) for r in rows]

    def route(self, row: dict, d: tuple | None, out: Emit) -> None:
        row = dict(row)
        if d is None:
            row["exact_dup_count"] = 1
            out.keep(row)
        elif d[0] is None:
            row["exact_dup_count"] = d[2]
            out.keep(row)
        else:
            row["exact_dup_count"] = None
            out.reject(row, REASON, d[0], d[1])


class ExactDedup(beam.PTransform):
    """Keep one record per exact-duplicate group (smallest id, then source); see the module
    docstring for what is shuffled."""

    def __init__(self, cfg: ExactDedupConfig | None = None) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg or ExactDedupConfig()

    def expand(self, records: beam.PCollection) -> StageOutputs:
        keyed = run_step(records, "Key", _KeyFn(self._cfg), tags=(_KEYS,))
        decided = keyed[_KEYS] | "Group" >> beam.GroupByKey() | "Decide" >> beam.FlatMap(_decide)
        applied = run_step(keyed.kept, "Apply", _ApplyFn(), beam.pvalue.AsDict(decided))
        return StageOutputs(
            kept=applied.kept,
            rejected=applied[REJECTED],
            dead=(keyed[DEAD], applied[DEAD]) | "Dead" >> beam.Flatten(),
            timing=(keyed[TIMING], applied[TIMING]),
        )


def _build(cfg: ExactDedupConfig, ctx: BuildContext) -> beam.PTransform:
    return ExactDedup(cfg)


DECLARATION = StageDecl(NAME, ExactDedupConfig, _build, lambda cfg: FIELDS, (REASON,))

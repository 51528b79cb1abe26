"""``exact_dedup``: group records by a content hash, keep the smallest id of each group."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import apache_beam as beam
import pyarrow as pa

from winnow.filters.exact import ExactDedupConfig, exact_key, pick_survivor
from winnow.pipeline.records import make_dead_letter, make_reject
from winnow.pipeline.stages.base import DEAD, REJECTED, StageCounters, StageOutputs, error_text

__all__ = ["ExactDedup", "FIELDS", "REASON"]

NAME = "exact_dedup"
REASON = "exact_dedup_duplicate"
#: The kept record of a group says how many copies there were (1 = unique).
FIELDS = (pa.field("exact_dup_count", pa.int64(), nullable=True),)


class _KeyFn(beam.DoFn):
    def __init__(self, cfg: ExactDedupConfig) -> None:
        self._cfg = cfg

    def setup(self) -> None:
        self._counters = StageCounters(NAME)

    def process(self, record: dict) -> Iterable[Any]:
        try:
            yield exact_key(record, self._cfg), record
        except Exception as exc:  # noqa: BLE001
            self._counters.inc("dead_letter")
            yield beam.pvalue.TaggedOutput(
                DEAD, make_dead_letter(stage=NAME, error=error_text(exc), source=record.get("source", "?"), record=record)
            )


class _PickFn(beam.DoFn):
    """Two passes over the group (re-iterable on every runner, paged on Dataflow): find the
    survivor, then emit it and the rejects. Memory stays bounded for huge groups."""

    def setup(self) -> None:
        self._counters = StageCounters(NAME)

    def process(self, element: tuple[str, Iterable[dict]]) -> Iterable[Any]:
        _, group = element
        n = 0

        def keys() -> Iterator[tuple[str, str]]:
            nonlocal n
            for r in group:
                n += 1
                yield r["id"], r["source"]

        best = pick_survivor(keys())
        survivor_id, survivor_source = best
        emitted = False
        for r in group:
            if not emitted and (r["id"], r["source"]) == best:
                emitted = True
                out = dict(r)
                out["exact_dup_count"] = n
                self._counters.inc("kept")
                yield out
            else:
                self._counters.inc(REASON)
                yield beam.pvalue.TaggedOutput(REJECTED, make_reject(r, NAME, REASON, survivor_id, survivor_source))


class ExactDedup(beam.PTransform):
    """Keep one record per exact-duplicate group (smallest id, then source).

    Shuffles every record once (GroupByKey on a 128-bit content hash); a group of any size is
    read twice as an iterable and never held in memory.
    """

    def __init__(self, cfg: ExactDedupConfig | None = None) -> None:
        super().__init__(label=NAME)
        self._cfg = cfg or ExactDedupConfig()

    def expand(self, records: beam.PCollection) -> StageOutputs:
        keyed = records | "Key" >> beam.ParDo(_KeyFn(self._cfg)).with_outputs(DEAD, main="keyed")
        picked = (
            keyed.keyed
            | "Group" >> beam.GroupByKey()
            | "Pick" >> beam.ParDo(_PickFn()).with_outputs(REJECTED, main="kept")
        )
        return StageOutputs(kept=picked.kept, rejected=picked[REJECTED], dead=keyed[DEAD])

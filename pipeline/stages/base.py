"""Mapping pure stages over PCollections: metrics, rejects and dead letters.

A stage transform takes a PCollection of records and returns :class:`StageOutputs`: the kept
records, the rejects (with ``reject_stage`` and ``reject_reason``) and the dead letters (a
record on which the stage raised, with the error). Nothing is dropped silently.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from winnow.filters.base import RecordFilter
from winnow.pipeline.records import make_dead_letter, make_reject
from winnow.pipeline.stages.validate import FieldChecks

__all__ = ["StageOutputs", "RecordStage", "REJECTED", "DEAD", "error_text", "StageCounters"]

REJECTED = "rejected"
DEAD = "dead"


@dataclass
class StageOutputs:
    """What a stage transform returns.

    Attributes:
        kept: records that go on to the next stage.
        rejected: records dropped with ``reject_stage`` and ``reject_reason``.
        dead: records the stage raised on, with the error.
        stats: optional PCollection of JSON-able dicts (usually one, from a combiner;
            see :mod:`winnow.pipeline.stages.stats`); merged into
            ``stats.json["stage_stats"][stage]`` for the report.
        artifacts: optional PCollection of dicts ``{"tokenizer": {...}}`` merged into the
            manifest's fields of the same name (files the stage wrote under OUT).
    """

    kept: beam.PCollection
    rejected: beam.PCollection
    dead: beam.PCollection
    stats: beam.PCollection | None = None
    artifacts: beam.PCollection | None = None


def error_text(exc: BaseException) -> str:
    """``Type: message`` plus the innermost frame, short enough for a report."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"[:2000]


class StageCounters:
    """Beam Metrics counters ``<stage>/<reason>``, created once per reason."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._counters: dict[str, Any] = {}

    def inc(self, reason: str, n: int = 1) -> None:
        c = self._counters.get(reason)
        if c is None:
            c = self._counters[reason] = Metrics.counter("winnow", f"{self.stage}/{reason}")
        c.inc(n)

    def route(self, record: dict, verdict: Any) -> Any:
        """Count a verdict and return the record (kept) or its reject (tagged ``REJECTED``)."""
        if verdict.keep:
            self.inc("kept")
            return record
        self.inc(verdict.reason)
        return beam.pvalue.TaggedOutput(REJECTED, make_reject(record, self.stage, verdict.reason))


class _RecordStageFn(beam.DoFn):
    def __init__(self, factory: Callable[[], RecordFilter], stage: str) -> None:
        self._factory = factory
        self._stage_name = stage
        self._stage: RecordFilter | None = None

    def setup(self) -> None:
        self._stage = self._factory()
        self._counters = StageCounters(self._stage_name)
        self._checks = FieldChecks(self._stage_name, self._stage.fields())

    def _dead(self, record: dict, error: str) -> Any:
        self._counters.inc("dead_letter")
        return beam.pvalue.TaggedOutput(
            DEAD, make_dead_letter(stage=self._stage_name, error=error, source=record.get("source", "?"), record=record)
        )

    def _route(self, original: dict, out: dict, verdict: Any) -> Any:
        problem = self._checks.problem(out)
        if problem is not None:
            return self._dead(original, problem)
        return self._counters.route(out, verdict)

    def _one(self, record: dict) -> Iterable[Any]:
        try:
            out, verdict = self._stage.process(dict(record))
        except Exception as exc:  # noqa: BLE001 - one bad record must not fail the run
            yield self._dead(record, error_text(exc))
            return
        yield self._route(record, out, verdict)

    def process(self, element: Any) -> Iterable[Any]:
        if isinstance(element, list):  # a batch from BatchElements
            try:
                results = list(self._stage.process_batch([dict(r) for r in element]))
            except Exception:  # noqa: BLE001 - isolate the bad record by going one at a time
                for r in element:
                    yield from self._one(r)
                return
            if len(results) != len(element):
                raise RuntimeError(
                    f"stage {self._stage_name}: process_batch returned {len(results)} results for {len(element)} records"
                )
            for original, (out, verdict) in zip(element, results):
                yield self._route(original, out, verdict)
        else:
            yield from self._one(element)


def _record_weight(record: Any) -> int:
    """A record's weight in a batch: 1, plus 1 per 64 Ki characters of text or bytes of image and audio."""
    size = 0
    for key in ("text", "image", "audio"):
        v = record.get(key) if isinstance(record, dict) else None
        if v is not None:
            size += len(v)
    return 1 + (size >> 16)


class BatchRecords(beam.PTransform):
    """Records in lists for vectorised work: at most ``max_records`` of them, where a record
    weighs 1 plus 1 per 64 Ki characters of text or bytes of media, so a batch of large
    documents holds about ``max_records`` x 64 Ki of them (plus one record). Never empty."""

    def __init__(self, max_records: int) -> None:
        super().__init__()
        self._max = max_records

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return (records
                | "Weighted" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max,
                                                   element_size_fn=_record_weight)
                # (BatchElements emits an empty list when a bundle opens with a heavy record)
                | "NotEmpty" >> beam.Filter(bool))


class RecordStage(beam.PTransform):
    """Map a pure per-record stage over a PCollection.

    Args:
        stage: the stage name (metrics namespace and ``reject_stage``).
        factory: builds the pure stage; called in ``DoFn.setup``, once per worker process,
            so models load there and never get pickled.
        batch_size: >1 hands the stage batches (``process_batch``) for vectorised work, of at
            most this many records (see :class:`BatchRecords`).
    """

    def __init__(self, stage: str, factory: Callable[[], RecordFilter], batch_size: int = 1) -> None:
        super().__init__(label=stage)
        self._stage = stage
        self._factory = factory
        self._batch_size = batch_size

    def expand(self, records: beam.PCollection) -> StageOutputs:
        pc = records
        if self._batch_size > 1:
            pc = pc | "Batch" >> BatchRecords(self._batch_size)
        outs = pc | "Apply" >> beam.ParDo(_RecordStageFn(self._factory, self._stage)).with_outputs(
            REJECTED, DEAD, main="kept"
        )
        return StageOutputs(kept=outs.kept, rejected=outs[REJECTED], dead=outs[DEAD])

"""The one guarded mechanism every stage runs its per-record work through.

Records travel between stages as :class:`~winnow.pipeline.batch.Records` batches. A stage is
one or more :class:`StageFn` steps (a ``beam.DoFn``); the step says what to compute for a list
of records (:meth:`StageFn.compute`) and where each record goes (:meth:`StageFn.route`), and
:class:`StageFn` owns everything else, the same way for every stage:

* counting every outcome as Beam Metrics ``winnow:<stage>/<reason>``;
* sending drops to the rejects (``reject_stage``, ``reject_reason``, ``duplicate_of``);
* dead-lettering a record on which the stage raised, that record alone: when a batch call
  raises, the records are computed one at a time and only the failing ones are dead letters;
* dead-lettering a record whose declared columns do not fit their Arrow types;
* timing: CPU seconds of the step's thread, records and bytes in and out, emitted as data
  (the ``timing`` output) so stats.json has per-stage figures on every runner.

A stage's PTransform wires its steps and returns :class:`StageOutputs`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from winnow.filters.base import RecordFilter
from winnow.monitoring import progress
from winnow.pipeline.batch import Records, rows_weight
from winnow.pipeline.memory import release_memory, tune_gc
from winnow.pipeline.records import error_text, make_dead_letter, make_reject
from winnow.pipeline.stages.validate import FieldChecks

__all__ = [
    "StageOutputs", "StageFn", "Emit", "RecordStage", "REJECTED", "DEAD", "TIMING", "error_text",
    "StageCounters", "run_step", "explode", "TimedFn",
]

REJECTED = "rejected"
DEAD = "dead"
TIMING = "timing"


@dataclass
class StageOutputs:
    """What a stage transform returns.

    Attributes:
        kept: batches of records that go on to the next stage.
        rejected: batches of records dropped with ``reject_stage`` and ``reject_reason``.
        dead: batches of records the stage raised on, with the error.
        stats: optional PCollection of JSON-able dicts (usually one, from a combiner;
            see :mod:`winnow.pipeline.stages.stats`); merged into
            ``stats.json["stage_stats"][stage]`` for the report.
        artifacts: optional PCollection of dicts ``{"tokenizer": {...}}`` merged into the
            manifest's fields of the same name (files the stage wrote under OUT).
        timing: the ``timing`` outputs of the stage's :class:`StageFn` steps.
        published: artifacts later stages read as side inputs, by name (for example the
            trained tokenizer's model bytes under ``"tokenizer_model"``).
    """

    kept: beam.PCollection
    rejected: beam.PCollection
    dead: beam.PCollection
    stats: beam.PCollection | None = None
    artifacts: beam.PCollection | None = None
    timing: tuple[beam.PCollection, ...] = ()
    published: dict[str, beam.PCollection] = field(default_factory=dict)


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


class Emit:
    """Where :meth:`StageFn.route` sends a record: kept, rejected or another output."""

    __slots__ = ("kept", "rejected", "extra", "_stage", "_counts")

    def __init__(self, stage: str) -> None:
        self.kept: list[dict] = []
        self.rejected: list[dict] = []
        self.extra: list[tuple[str, Any]] = []
        self._stage = stage
        self._counts: dict[str, int] = {}

    def keep(self, row: dict) -> None:
        """The record goes on (to the next step, or the next stage after the last step)."""
        self.kept.append(row)

    def reject(self, row: dict, reason: str, duplicate_of: str | None = None,
               duplicate_of_source: str | None = None) -> None:
        """The record is dropped for ``reason`` (counted, and written to the rejects)."""
        self._counts[reason] = self._counts.get(reason, 0) + 1
        self.rejected.append(make_reject(row, self._stage, reason, duplicate_of, duplicate_of_source))

    def emit(self, tag: str, value: Any) -> None:
        """A value for the step's output ``tag`` (keys for a shuffle, measurements ...)."""
        self.extra.append((tag, value))

    def count(self, reason: str, n: int = 1) -> None:
        """Count an outcome that is not a drop (``not_compared``, ``unsigned`` ...)."""
        self._counts[reason] = self._counts.get(reason, 0) + n


class StageFn(beam.DoFn):
    """One guarded step of a stage over :class:`Records` batches (see the module docstring).

    Subclasses override :meth:`start` (load models; runs once per worker process),
    :meth:`compute` (one result per record; may raise) and :meth:`route` (send the record
    somewhere through :class:`Emit`; should not raise).

    Args:
        stage: the stage name (metrics, ``reject_stage``, stats).
        first: this step is where records enter the stage (counts records and bytes in).
        last: this step is where records leave the stage (counts kept records and bytes out).
        chunk: compute at most this many records per call (0: the whole batch).
        fields: the stage's declared columns, checked on every kept record of the last step.
    """

    def __init__(self, stage: str, *, first: bool = True, last: bool = True, chunk: int = 0,
                 fields: Sequence[Any] = ()) -> None:
        self.stage = stage
        self._first, self._last, self._chunk = first, last, chunk
        self._fields = tuple(fields)

    # -- what a step overrides ------------------------------------------------------------
    def start(self) -> None:
        """Load models and build helpers (once per worker process)."""

    def compute(self, rows: list[dict], *side: Any) -> Sequence[Any]:
        """One result per record, in order; raise to have the records retried one by one."""
        return [None] * len(rows)

    def route(self, row: dict, result: Any, out: Emit) -> None:
        """Send ``row`` (with ``result``) to ``out.keep``, ``out.reject`` or ``out.emit``."""
        out.keep(row)

    def finish_batch(self, out: Emit) -> None:
        """After every record of a batch is routed: emit what was gathered per batch (for
        example one packed element per shuffle partition instead of one per record)."""

    # -- the mechanism ----------------------------------------------------------------------
    def setup(self) -> None:
        tune_gc()  # once per worker process, whatever the runner
        self._counters = StageCounters(self.stage)
        self._checks = FieldChecks(self.stage, self._fields) if self._fields and self._last else None
        self.start()

    def _results(self, rows: list[dict], side: tuple, dead: list[dict]) -> list[tuple[dict, Any]]:
        try:
            results = self.compute(rows, *side)
        except Exception:  # noqa: BLE001 - isolate the failing record(s), one at a time
            results = None
        if results is not None:
            if len(results) != len(rows):
                raise RuntimeError(
                    f"stage {self.stage}: {type(self).__name__}.compute returned {len(results)} results "
                    f"for {len(rows)} records")
            return list(zip(rows, results))
        ok = []
        for r in rows:
            try:
                ok.append((r, self.compute([r], *side)[0]))
            except Exception as exc:  # noqa: BLE001 - one bad record must not fail the run
                dead.append(make_dead_letter(stage=self.stage, error=error_text(exc),
                                             source=r.get("source", "?"), record=r))
        return ok

    def finish_bundle(self) -> None:
        release_memory()  # on a local runner a bundle is often a whole stage's input

    def process(self, batch, *side):  # no annotations: Beam would read them as type hints
        t0 = time.thread_time()
        rows = batch.rows
        emit = Emit(self.stage)
        dead: list[dict] = []
        step = self._chunk or len(rows) or 1
        for i in range(0, len(rows), step):
            for row, result in self._results(rows[i:i + step], side, dead):
                n_kept = len(emit.kept)
                self.route(row, result, emit)
                if self._checks is not None and len(emit.kept) > n_kept:
                    problem = self._checks.problem(emit.kept[-1])
                    if problem is not None:
                        emit.kept.pop()
                        dead.append(make_dead_letter(stage=self.stage, error=problem,
                                                     source=row.get("source", "?"), record=row))
        self.finish_batch(emit)
        counts = emit._counts
        if self._last and emit.kept:
            counts["kept"] = counts.get("kept", 0) + len(emit.kept)
        if dead:
            counts["dead_letter"] = counts.get("dead_letter", 0) + len(dead)
        for reason, n in counts.items():
            self._counters.inc(reason, n)
        n_in = b_in = n_out = b_out = 0
        if self._first:
            n_in = len(rows)
            b_in = batch.weight()
        if self._last:
            n_out = len(emit.kept)
            b_out = rows_weight(emit.kept)
        progress.record(self.stage, n_in, n_out, len(emit.rejected), len(dead), b_in)
        # measured before anything is yielded: a yield runs the fused steps downstream
        cpu = time.thread_time() - t0
        yield beam.pvalue.TaggedOutput(TIMING, (self.stage, (cpu, n_in, b_in, n_out, b_out)))
        if emit.kept:
            yield Records(emit.kept, weight=b_out if self._last else None)  # the next stage's bytes in
        if emit.rejected:
            yield beam.pvalue.TaggedOutput(REJECTED, Records(emit.rejected))
        if dead:
            yield beam.pvalue.TaggedOutput(DEAD, Records(dead))
        for tag, value in emit.extra:
            yield beam.pvalue.TaggedOutput(tag, value)


class TimedFn(beam.DoFn):
    """A plain DoFn of a stage (a shuffle step) whose CPU time counts toward the stage's.

    Subclasses implement :meth:`work` (what ``process`` would be); the outputs are gathered
    before they are yielded, so a fused step downstream is not counted, and the time goes out
    at the end of the bundle on the ``timing`` output (wire it with ``with_outputs(TIMING, ...)``
    or :func:`timed_step`).
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._cpu = 0.0

    def work(self, element: Any, *args: Any) -> Iterable[Any]:
        raise NotImplementedError

    def start_bundle(self) -> None:
        self._cpu = 0.0

    def process(self, element, *args):  # no annotations: Beam would read them as type hints
        t0 = time.thread_time()
        out = list(self.work(element, *args) or ())
        self._cpu += time.thread_time() - t0
        yield from out

    def finish_bundle(self) -> Iterable[Any]:
        from apache_beam.transforms.window import GlobalWindows

        if self._cpu:
            yield beam.pvalue.TaggedOutput(TIMING, GlobalWindows.windowed_value((self.stage, (self._cpu, 0, 0, 0, 0))))
        self._cpu = 0.0


class _TimedCall(TimedFn):
    """A plain function of a stage's step, timed: ``fn(element, *side)`` gives the outputs."""

    def __init__(self, stage: str, fn: Callable[..., Iterable[Any] | None]) -> None:
        super().__init__(stage)
        self._fn = fn

    def work(self, element: Any, *args: Any) -> Iterable[Any]:
        return self._fn(element, *args)


def timed_step(pcoll: beam.PCollection, label: str, stage: str, fn: Callable[..., Iterable[Any] | None],
               *side: Any, timings: list | None = None) -> beam.PCollection:
    """``pcoll | label >> FlatMap(fn, *side)`` whose CPU time counts toward ``stage``'s: the step's
    timing output is appended to ``timings`` (wire those into the stage's ``StageOutputs.timing``)."""
    out = pcoll | label >> beam.ParDo(_TimedCall(stage, fn), *side).with_outputs(TIMING, main="out")
    if timings is not None:
        timings.append(out[TIMING])
    return out.out


def run_step(pcoll: beam.PCollection, label: str, fn: StageFn, *side: Any, tags: Sequence[str] = ()) -> Any:
    """``ParDo(fn)`` with its rejected, dead, timing and extra ``tags`` outputs; main is ``kept``."""
    return pcoll | label >> beam.ParDo(fn, *side).with_outputs(REJECTED, DEAD, TIMING, *tags, main="kept")


def explode(batches: beam.PCollection, label: str) -> beam.PCollection:
    """The records of a batch PCollection one by one (for combiners and report samples)."""
    return batches | label >> beam.FlatMap(lambda b: b.rows)


class _FilterFn(StageFn):
    """A pure per-record stage (:class:`RecordFilter`) as a guarded step."""

    def __init__(self, stage: str, factory: Callable[[], RecordFilter], chunk: int) -> None:
        super().__init__(stage, chunk=chunk)
        self._factory = factory

    def start(self) -> None:
        self._filter = self._factory()
        self._checks = FieldChecks(self.stage, self._filter.fields())

    def compute(self, rows: list[dict], *side: Any) -> Sequence[Any]:
        if len(rows) == 1:
            return [self._filter.process(dict(rows[0]))]
        return list(self._filter.process_batch([dict(r) for r in rows]))

    def route(self, row: dict, result: Any, out: Emit) -> None:
        record, verdict = result
        if verdict.keep:
            out.keep(record)
        else:
            out.reject(record, verdict.reason)


class RecordStage(beam.PTransform):
    """Map a pure per-record stage over batches of records.

    Args:
        stage: the stage name (metrics namespace and ``reject_stage``).
        factory: builds the pure stage; called in ``DoFn.setup``, once per worker process,
            so models load there and never get pickled.
        batch_size: >1 hands the stage up to this many records at once (``process_batch``)
            for vectorised work; 1 calls ``process`` per record.
    """

    def __init__(self, stage: str, factory: Callable[[], RecordFilter], batch_size: int = 1) -> None:
        super().__init__(label=stage)
        self._stage = stage
        self._factory = factory
        self._batch_size = batch_size

    def expand(self, records: beam.PCollection) -> StageOutputs:
        outs = run_step(records, "Apply", _FilterFn(self._stage, self._factory, max(self._batch_size, 1)))
        return StageOutputs(kept=outs.kept, rejected=outs[REJECTED], dead=outs[DEAD], timing=(outs[TIMING],))

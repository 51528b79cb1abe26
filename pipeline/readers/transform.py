"""The Beam transform that reads input files into records and dead letters.

Files are the unit of work: ``Create(files) | Reshuffle() | ParDo(read)`` spreads them across
workers, and each worker streams its files through :func:`read_file`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable, NamedTuple, Sequence

import apache_beam as beam

from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.inputs import InputFile
from winnow.pipeline.readers.read import read_file
from winnow.pipeline.records import is_dead_letter
from winnow.pipeline.stages.base import StageCounters

__all__ = ["ReadRecords", "ReadOutputs", "DEAD", "PROGRESS_INTERVAL_S"]

DEAD = "dead"
#: Seconds between progress lines of one process.
PROGRESS_INTERVAL_S = 5.0
_FLUSH_EVERY = 4096  # items between counter updates within one file

_log = logging.getLogger("winnow")


class ReadOutputs(NamedTuple):
    """What :class:`ReadRecords` returns."""

    records: beam.PCollection
    dead: beam.PCollection


class _Progress:
    """Read totals of this process, logged at most every :data:`PROGRESS_INTERVAL_S`.

    Updated once per file and every few thousand items, never per record.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files = self.records = self.dead = 0
        self._last = time.monotonic()

    def add(self, files: int, records: int, dead: int) -> None:
        with self._lock:
            self.files += files
            self.records += records
            self.dead += dead
            now = time.monotonic()
            if now - self._last < PROGRESS_INTERVAL_S:
                return
            self._last = now
            line = self.line()
        _log.info(line)

    def line(self) -> str:
        return f"winnow: read {self.files:,} files, {self.records:,} records, {self.dead:,} dead letters"


_PROGRESS = _Progress()


class _ReadFn(beam.DoFn):
    def __init__(self, cfg: ReaderConfig) -> None:
        self._cfg = cfg

    def setup(self) -> None:
        self._counters = StageCounters("read")

    def _flush(self, files: int, records: int, dead: int) -> None:
        if files:
            self._counters.inc("files", files)
        if records:
            self._counters.inc("records", records)
        if dead:
            self._counters.inc("dead_letter", dead)
        _PROGRESS.add(files, records, dead)

    def process(self, f: InputFile) -> Iterable[Any]:
        records = dead = 0
        for item in read_file(f, self._cfg):
            if is_dead_letter(item):
                dead += 1
                yield beam.pvalue.TaggedOutput(DEAD, item)
            else:
                records += 1
                yield item
            if records + dead >= _FLUSH_EVERY:
                self._flush(0, records, dead)
                records = dead = 0
        self._flush(1, records, dead)


class ReadRecords(beam.PTransform):
    """Read input files into records and dead letters.

    Apply it to the pipeline (``p | ReadRecords(files, cfg)``). Beam Metrics count
    ``read/records``, ``read/dead_letter`` and ``read/files`` (namespace ``winnow``), and each
    process logs a progress line to the ``winnow`` logger at most every five seconds.

    Args:
        files: from :func:`~winnow.pipeline.readers.expand_inputs`.
        cfg: the reader config.

    Returns:
        :class:`ReadOutputs` with ``records`` and ``dead`` (read-stage dead letters).
    """

    def __init__(self, files: Sequence[InputFile], cfg: ReaderConfig, label: str | None = None) -> None:
        super().__init__(label)
        self._files = list(files)
        self._cfg = cfg

    def expand(self, pbegin: beam.pvalue.PBegin) -> ReadOutputs:
        files = (
            pbegin
            | "Files" >> beam.Create(self._files)
            | "Spread" >> beam.Reshuffle()
        )
        outs = files | "Read" >> beam.ParDo(_ReadFn(self._cfg)).with_outputs(DEAD, main="records")
        return ReadOutputs(records=outs.records, dead=outs[DEAD])

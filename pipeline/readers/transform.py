"""The Beam transform that reads input files into records and dead letters.

Files are the unit of work: ``Create(files) | Reshuffle() | ParDo(read)`` spreads them across
workers, and each worker streams its files through :func:`read_file`.

The driver expands the inputs first (:func:`~winnow.pipeline.readers.expand_inputs`), which
gives early, clear errors. A list of more than :data:`EMBED_MAX_FILES` files is not embedded in
the job graph (millions of images would pass Dataflow's 10 MB limit on the graph): the graph
holds the input URIs instead, and the workers expand them again with the same code, one file
per key (the same choice as the driver's), so the same files are read either way.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable, NamedTuple, Sequence

import apache_beam as beam
from fsspec.core import split_protocol
from fsspec.implementations.local import make_path_posix

from winnow.pipeline.batch import BATCH_BYTES, BATCH_RECORDS, Records, record_weight
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.inputs import InputFile, expand_input, merge_inputs
from winnow.pipeline.readers.read import read_file
from winnow.pipeline.records import is_dead_letter
from winnow.pipeline.stages.base import StageCounters

__all__ = ["ReadRecords", "ReadOutputs", "DEAD", "PROGRESS_INTERVAL_S", "EMBED_MAX_FILES"]

DEAD = "dead"
#: Most files whose list is embedded in the job graph; past it, workers expand the inputs.
EMBED_MAX_FILES = 5000
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
        # DEBUG: a process's partial read totals read as wrong beside the per-stage progress
        # lines (winnow.monitoring.progress) that local runs print
        _log.debug(line)

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
        rows: list[dict] = []
        dead_rows: list[dict] = []
        size = 0
        for item in read_file(f, self._cfg):
            if is_dead_letter(item):
                dead += 1
                dead_rows.append(item)
                if len(dead_rows) >= BATCH_RECORDS:
                    yield beam.pvalue.TaggedOutput(DEAD, Records(dead_rows))
                    dead_rows = []
            else:
                records += 1
                rows.append(item)
                size += record_weight(item)
                if len(rows) >= BATCH_RECORDS or size >= BATCH_BYTES:
                    yield Records(rows, weight=size)
                    rows, size = [], 0
            if records + dead >= _FLUSH_EVERY:
                self._flush(0, records, dead)
                records = dead = 0
        if rows:
            yield Records(rows, weight=size)
        if dead_rows:
            yield beam.pvalue.TaggedOutput(DEAD, Records(dead_rows))
        self._flush(1, records, dead)


def _to_bytes(text: str) -> bytes:
    # URIs travel as bytes: a non-UTF-8 file name (surrogate-escaped) would fail Beam's str coder
    return text.encode("utf-8", "surrogateescape")


def _expand_on_worker(uri: bytes, cfg: ReaderConfig) -> Iterable[tuple[bytes, InputFile]]:
    for (protocol, path), f in expand_input(uri.decode("utf-8", "surrogateescape"), cfg):
        yield _to_bytes(f"{protocol}\0{path}"), f


def _one_per_file(files: Iterable[InputFile]) -> InputFile:
    return merge_inputs((("", ""), f) for f in files)[0]


def _absolute(uri: str) -> str:
    """A local path made absolute here, so workers with another working folder find it."""
    return make_path_posix(uri) if split_protocol(uri)[0] is None else uri


class ReadRecords(beam.PTransform):
    """Read input files into records and dead letters.

    Apply it to the pipeline (``p | ReadRecords(files, cfg)``). Beam Metrics count
    ``read/records``, ``read/dead_letter`` and ``read/files`` (namespace ``winnow``), and each
    process logs a progress line to the ``winnow`` logger at most every five seconds.

    Args:
        files: from :func:`~winnow.pipeline.readers.expand_inputs`.
        cfg: the reader config.
        uris: the inputs ``files`` were expanded from; by default those
            :func:`~winnow.pipeline.readers.expand_inputs` recorded. When there are more than
            :data:`EMBED_MAX_FILES` files and the inputs are known, the workers expand them
            again instead of the graph holding every file.

    Returns:
        :class:`ReadOutputs` with ``records`` and ``dead`` (read-stage dead letters), both
        PCollections of :class:`~winnow.pipeline.batch.Records` batches (one file's items
        in file order, cut by count and bytes).
    """

    def __init__(
        self,
        files: Sequence[InputFile],
        cfg: ReaderConfig,
        label: str | None = None,
        uris: Sequence[str] | None = None,
    ) -> None:
        super().__init__(label)
        self._files = list(files)
        self._uris = [str(u) for u in (uris if uris is not None else getattr(files, "uris", ()))]
        self._cfg = cfg

    def expand(self, pbegin: beam.pvalue.PBegin) -> ReadOutputs:
        if len(self._files) > EMBED_MAX_FILES and self._uris:
            _log.info(
                "winnow: %s input files: the workers list %s input(s) again rather than the job graph holding every file",
                f"{len(self._files):,}",
                len(self._uris),
            )
            files = (
                pbegin
                | "Inputs" >> beam.Create([_to_bytes(_absolute(u)) for u in self._uris])
                | "Expand" >> beam.FlatMap(_expand_on_worker, self._cfg)
                | "OnePerFile" >> beam.CombinePerKey(_one_per_file)
                | "DropKeys" >> beam.Values()
                | "Spread" >> beam.Reshuffle()
            )
        else:
            files = (
                pbegin
                | "Files" >> beam.Create(self._files)
                | "Spread" >> beam.Reshuffle()
            )
        outs = files | "Read" >> beam.ParDo(_ReadFn(self._cfg)).with_outputs(DEAD, main="records")
        return ReadOutputs(records=outs.records, dead=outs[DEAD])

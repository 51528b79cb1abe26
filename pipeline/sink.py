"""The Arrow shard sink: deterministic, byte-sized, temp-then-rename.

Shard assignment is a hash of (id, source) modulo a shard count derived from the total
bytes (a Beam combiner, passed as a side input), so the same input and config give the same
shards whatever the runner, worker count or bundle boundaries. Each incoming batch is split
by shard and travels to its shard's writer as one Arrow-encoded batch (never a record at a
time); the writer conforms the batches to the schema, sorts the rows by (id, source) with
Arrow and cuts them into record batches by bytes (:mod:`winnow.shardio`).
"""

from __future__ import annotations

import logging
import posixpath
import uuid
from typing import Any, Iterable

import apache_beam as beam
import fsspec
import numpy as np
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from winnow.format import ShardInfo, shard_name
from winnow.pipeline.batch import Records, rows_to_arrow
from winnow.pipeline.config import SinkConfig
from winnow.pipeline.memory import release_memory
from winnow.pipeline.spill import SPILL_FLUSH_BYTES, remove_when_done
from winnow.shardio import (
    atomic_write,
    conform,
    join_uri,
    rows_table,
    shard_count,
    shard_index,
    shard_of,
    sort_order,
    table_to_batches,
    write_arrow_file,
)

__all__ = ["WriteShards", "batch_bytes", "shard_of", "write_arrow_file", "join_uri", "atomic_write", "records_table"]

_log = logging.getLogger("winnow")


def batch_bytes(batch: Records) -> int:
    """The bytes a batch counts for in the shard count."""
    return batch.nbytes()


def records_table(batch: Records, schema: pa.Schema) -> pa.Table:
    """A batch as a table of ``schema`` (Arrow-encoded batches are cast without a Python detour)."""
    arrow = batch.arrow()
    if arrow is not None:
        try:
            return conform(arrow, schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            pass  # the row path below gives the same values or the precise error
    return rows_table(batch.rows, schema)


def _split(batch: Records, n: int) -> Iterable[tuple[int, Records]]:
    arrow = batch.arrow()
    if arrow is None:
        # the one conversion to Arrow of the sink: the writer then only casts and gathers
        arrow = rows_to_arrow(batch.rows)
    if arrow is not None:
        if n == 1:
            yield 0, Records.from_arrow(arrow)
            return
        ids = arrow.column("id").to_pylist()
        sources = arrow.column("source").to_pylist()
        keys = np.fromiter((shard_index(i, s, n) for i, s in zip(ids, sources)), dtype=np.int64, count=len(ids))
        order = np.argsort(keys, kind="stable")
        bounds = np.flatnonzero(np.diff(keys[order])) + 1
        for part in np.split(order, bounds):
            if len(part):
                yield int(keys[part[0]]), Records.from_arrow(arrow.take(pa.array(part)))
        return
    parts: dict[int, list[dict]] = {}
    for r in batch.rows:
        parts.setdefault(shard_of(r, n), []).append(r)
    for k in sorted(parts):
        yield k, Records(parts[k])


#: what a spilled part of a shard travels as: (spill file, first record batch, record batches)
SpillRef = tuple[str, int, int]


_SIZES = "sizes"


class _SpillFn(beam.DoFn):
    """Write the batches of a bundle to Arrow spill files (lz4), one per ``flush_bytes``; emit
    each file's URI, and each batch's :func:`batch_bytes` on the ``sizes`` output (for the
    shard count: one step instead of two, each costing the runner milliseconds per run).

    Needs no shard count, so it runs where the batches are produced: a local runner never
    holds them in memory while it waits for the count (rejects of an early stage would wait
    for the last stage). :class:`_SplitSpilledFn` then splits each file by shard.
    """

    def __init__(self, spill_dir: str, schema: pa.Schema, flush_bytes: int) -> None:
        self._dir = spill_dir
        self._schema = schema
        self._flush_bytes = flush_bytes

    def start_bundle(self) -> None:
        self._tables: list[pa.Table] = []
        self._bytes = 0

    def process(self, batch: Records) -> Iterable[Any]:
        yield beam.pvalue.TaggedOutput(_SIZES, batch_bytes(batch))
        table = records_table(batch, self._schema)
        self._tables.append(table)
        self._bytes += table.nbytes
        if self._bytes >= self._flush_bytes:
            yield from self._flush()

    def finish_bundle(self) -> Iterable[WindowedValue]:
        for uri in self._flush():
            yield WindowedValue(uri, MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self) -> list[str]:
        if not self._tables:
            return []
        tables, self._tables, self._bytes = self._tables, [], 0
        uri = join_uri(self._dir, f"{uuid.uuid4().hex}.arrow")
        write_arrow_file(uri, self._schema, (b for t in tables for b in t.to_batches()), "lz4")
        return [uri]


class _SplitSpilledFn(beam.DoFn):
    """Split one spill file by shard into a new spill file (its record batches grouped by
    shard); emit ``(shard, SpillRef)`` for each shard it holds rows of. With one shard the
    reference is to the spill file itself (nothing is read or written)."""

    def __init__(self, spill_dir: str, schema: pa.Schema) -> None:
        self._dir = spill_dir
        self._schema = schema

    def process(self, uri: str, n: int) -> Iterable[tuple[int, SpillRef]]:
        if n == 1:  # every row goes to the one shard: the spill file is already that part
            with fsspec.open(uri, "rb") as fh:
                return [(0, (uri, 0, pa.ipc.open_file(fh).num_record_batches))]
        with fsspec.open(uri, "rb") as fh:
            table = pa.ipc.open_file(fh).read_all()
        out = join_uri(self._dir, f"{uuid.uuid4().hex}.arrow")
        refs: list[tuple[int, SpillRef]] = []

        def batches() -> Iterable[pa.RecordBatch]:
            start = 0
            for k, part in _split(Records.from_arrow(table), n):
                chunk = records_table(part, self._schema).to_batches()
                refs.append((k, (out, start, len(chunk))))
                start += len(chunk)
                yield from chunk

        write_arrow_file(out, self._schema, batches(), "lz4")
        return refs


def _read_spilled(refs: list[SpillRef], schema: pa.Schema) -> list[pa.Table]:
    """The tables ``refs`` point at, each spill file opened once."""
    by_file: dict[str, list[tuple[int, int]]] = {}
    for uri, start, count in refs:
        by_file.setdefault(uri, []).append((start, count))
    tables = []
    for uri in sorted(by_file):
        with fsspec.open(uri, "rb") as fh:
            reader = pa.ipc.open_file(fh)
            for start, count in sorted(by_file[uri]):
                tables.append(pa.Table.from_batches([reader.get_batch(i) for i in range(start, start + count)], schema))
    return tables


class _WriteShardFn(beam.DoFn):
    def __init__(self, out_dir: str, subdir: str, schema: pa.Schema, cfg: SinkConfig, prefix: str,
                 shown_as: str = "") -> None:
        self._shown_as = shown_as
        self._out_dir = out_dir
        self._subdir = subdir
        self._schema = schema
        self._cfg = cfg
        self._prefix = prefix

    def process(self, element: tuple[int, Iterable[Any]], n: int) -> Iterable[dict]:
        idx, parts = element
        release_memory()  # what the stages before freed goes back before a shard is decoded
        parts = [b for b in parts if b is not None]
        refs = [b for b in parts if isinstance(b, tuple)]
        tables = [records_table(b, self._schema) for b in parts if not isinstance(b, tuple)]
        if refs:
            tables += _read_spilled(refs, self._schema)
        table = pa.concat_tables(tables) if tables else self._schema.empty_table()
        del tables
        name = shard_name(idx, n, self._prefix)
        rel = posixpath.join(self._subdir, name)
        # gathered in (id, source) order one output batch at a time and streamed to the file
        batches = table_to_batches(table, self._cfg.batch_bytes, sort_order(table))
        nbytes, digest = write_arrow_file(join_uri(self._out_dir, rel), self._schema, batches, self._cfg.compression)
        rows = table.num_rows
        _log.info("winnow: wrote %s (%d rows, %d bytes)", posixpath.join(self._shown_as, rel), rows, nbytes)
        del table, batches
        release_memory()
        yield ShardInfo(rel, rows, nbytes, digest).to_json()


class WriteShards(beam.PTransform):
    """Write a PCollection of record batches (or a tuple of them, written together) as
    ``OUT/<subdir>/part-XXXXX-of-NNNNN.arrow``.

    Args:
        out_dir: the run's output URI.
        subdir: ``shards``, ``rejects`` or ``dead_letter``.
        schema: the Arrow schema every shard has (missing columns are null).
        cfg: shard and batch sizes, compression.
        shown_as: what the log puts before ``subdir`` (``packed`` when ``out_dir`` is OUT/packed).
        spill_dir: where to spill the split batches (a local runner: see :class:`_SpillFn`);
            None shuffles the batches themselves (a distributed runner's shuffle is its own
            service). The folder is removed when every shard is written.

    Returns a PCollection of shard-info dicts (``path``, ``rows``, ``bytes``, ``xxh3_128``),
    one per shard, including empty shards, so the manifest lists exactly ``n`` files.
    Memory: one worker holds one shard's batches while writing it (about ``shard_bytes`` of
    Arrow data, plus one output batch at a time: the sorted rows are gathered batch by batch
    and streamed to the file).
    """

    def __init__(self, out_dir: str, subdir: str, schema: pa.Schema, cfg: SinkConfig, prefix: str = "part",
                 shown_as: str = "", spill_dir: str | None = None) -> None:
        super().__init__(label=f"Write[{subdir}]")
        self._spill_dir = spill_dir
        self._shown_as = shown_as
        self._out_dir = out_dir
        self._subdir = subdir
        self._schema = schema
        self._cfg = cfg
        self._prefix = prefix

    def expand(self, batches: beam.PCollection | tuple[beam.PCollection, ...]) -> beam.PCollection:
        cfg = self._cfg
        inputs = tuple(batches) if isinstance(batches, (tuple, list)) else (batches,)
        # sizes measured on each input before any Flatten: on a local runner the shard count (a
        # side input of the split) is then ready before the batches are read, so the split fuses
        # with the step that produced them instead of buffering a copy of them
        if self._spill_dir is None:
            sizes = [b | f"Size{i}" >> beam.Map(batch_bytes) for i, b in enumerate(inputs)] | "Sizes" >> beam.Flatten()
        else:
            # each input spilled where it is produced (its sizes measured by the same step), then
            # split by shard: only file names and references are flattened and shuffled (a
            # Flatten of the batches is a full in-memory buffer on FnApiRunner)
            spilled = [b | f"Spill{i}" >> beam.ParDo(_SpillFn(self._spill_dir, self._schema, SPILL_FLUSH_BYTES))
                       .with_outputs(_SIZES, main="files") for i, b in enumerate(inputs)]
            sizes = [s[_SIZES] for s in spilled] | "Sizes" >> beam.Flatten()
        total = sizes | "Total" >> beam.CombineGlobally(sum)
        count = total | "Count" >> beam.Map(lambda t: shard_count(t, cfg.shard_bytes, cfg.min_shards))
        n = beam.pvalue.AsSingleton(count)
        if self._spill_dir is None:
            flat = inputs[0] if len(inputs) == 1 else inputs | "FlattenBatches" >> beam.Flatten()
            keyed = flat | "Assign" >> beam.FlatMap(_split, n=n)
        else:
            files = [s.files for s in spilled] | "FlattenSpilled" >> beam.Flatten()
            keyed = files | "SplitSpilled" >> beam.ParDo(_SplitSpilledFn(self._spill_dir, self._schema), n=n)
        slots = count | "Slots" >> beam.FlatMap(lambda k: [(i, None) for i in range(k)])
        grouped = (keyed, slots) | "Keyed" >> beam.Flatten() | "Group" >> beam.GroupByKey()
        infos = grouped | "Write" >> beam.ParDo(
            _WriteShardFn(self._out_dir, self._subdir, self._schema, cfg, self._prefix, self._shown_as), n=n
        )
        if self._spill_dir is not None:
            remove_when_done(infos, self._spill_dir)
        return infos

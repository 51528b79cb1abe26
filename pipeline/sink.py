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
from typing import Any, Iterable

import apache_beam as beam
import numpy as np
import pyarrow as pa

from winnow.format import ShardInfo, shard_name
from winnow.pipeline.batch import Records, rows_to_arrow
from winnow.pipeline.config import SinkConfig
from winnow.pipeline.memory import release_memory
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
        tables = [records_table(b, self._schema) for b in parts if b is not None]
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
    """Write a PCollection of record batches as ``OUT/<subdir>/part-XXXXX-of-NNNNN.arrow``.

    Args:
        out_dir: the run's output URI.
        subdir: ``shards``, ``rejects`` or ``dead_letter``.
        schema: the Arrow schema every shard has (missing columns are null).
        cfg: shard and batch sizes, compression.
        shown_as: what the log puts before ``subdir`` (``packed`` when ``out_dir`` is OUT/packed).
        sizes: the batches' :func:`batch_bytes`, when the caller can compute them upstream. On
            a local runner the shard count (a side input of the split) is then ready before
            the batches are read, so the split fuses with that read instead of buffering
            another copy of them (the rejects, flattened from every stage, are the case).

    Returns a PCollection of shard-info dicts (``path``, ``rows``, ``bytes``, ``xxh3_128``),
    one per shard, including empty shards, so the manifest lists exactly ``n`` files.
    Memory: one worker holds one shard's batches while writing it (about ``shard_bytes`` of
    Arrow data, plus one output batch at a time: the sorted rows are gathered batch by batch
    and streamed to the file).
    """

    def __init__(self, out_dir: str, subdir: str, schema: pa.Schema, cfg: SinkConfig, prefix: str = "part",
                 shown_as: str = "", sizes: beam.PCollection | None = None) -> None:
        super().__init__(label=f"Write[{subdir}]")
        self._shown_as = shown_as
        self._sizes = sizes
        self._out_dir = out_dir
        self._subdir = subdir
        self._schema = schema
        self._cfg = cfg
        self._prefix = prefix

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        cfg = self._cfg
        sizes = self._sizes if self._sizes is not None else batches | "Size" >> beam.Map(batch_bytes)
        total = sizes | "Total" >> beam.CombineGlobally(sum)
        count = total | "Count" >> beam.Map(lambda t: shard_count(t, cfg.shard_bytes, cfg.min_shards))
        n = beam.pvalue.AsSingleton(count)
        keyed = batches | "Assign" >> beam.FlatMap(_split, n=n)
        slots = count | "Slots" >> beam.FlatMap(lambda k: [(i, None) for i in range(k)])
        grouped = (keyed, slots) | "Keyed" >> beam.Flatten() | "Group" >> beam.GroupByKey()
        return grouped | "Write" >> beam.ParDo(
            _WriteShardFn(self._out_dir, self._subdir, self._schema, cfg, self._prefix, self._shown_as), n=n
        )

"""The Arrow shard sink: deterministic, byte-sized, temp-then-rename.

Shard assignment is a hash of (id, source) modulo a shard count derived from the total
bytes (a Beam combiner, passed as a side input), so the same input and config give the same
shards whatever the runner, worker count or bundle boundaries. Within a shard, records are
sorted by (id, source) and cut into record batches by bytes.
"""

from __future__ import annotations

import logging
import math
import posixpath
import uuid
from typing import Any, Iterable, Sequence

import apache_beam as beam
import fsspec
import pyarrow as pa
import xxhash

from winnow.format import ShardInfo, shard_name, xxh3_128_hex
from winnow.pipeline.config import SinkConfig
from winnow.pipeline.records import record_bytes

__all__ = ["WriteShards", "shard_of", "write_arrow_file", "rows_to_batches", "join_uri", "atomic_write"]

_log = logging.getLogger("winnow")


def join_uri(base: str, *parts: str) -> str:
    """Join URI path parts with ``/`` (works for local paths and fsspec URLs alike)."""
    return posixpath.join(base, *parts)


def atomic_write(uri: str, data: bytes | memoryview) -> None:
    """Write ``data`` to a temporary name beside ``uri``, then rename it into place."""
    fs, path = fsspec.core.url_to_fs(uri)
    parent = posixpath.dirname(path)
    fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
    with fs.open(tmp, "wb") as fh:
        fh.write(data)
    fs.mv(tmp, path)


def shard_of(record: dict, n: int) -> int:
    """The shard a record goes to: stable across runs, runners and worker counts."""
    h = xxhash.xxh3_64_intdigest(f"{record['id']}\x00{record['source']}".encode("utf-8", "surrogatepass"))
    return h % n


def _sanitize(record: dict) -> dict:
    # Strings with lone surrogates cannot go into Arrow; replace them visibly.
    return {
        k: v.encode("utf-8", "replace").decode("utf-8") if isinstance(v, str) else v for k, v in record.items()
    }


def _to_batch(chunk: list[dict], schema: pa.Schema) -> pa.RecordBatch:
    try:
        return pa.RecordBatch.from_pylist(chunk, schema=schema)
    except UnicodeEncodeError:  # rare: try first, sanitise only on a miss
        return pa.RecordBatch.from_pylist([_sanitize(r) for r in chunk], schema=schema)


def rows_to_batches(rows: Sequence[dict], schema: pa.Schema, batch_bytes: int) -> Iterable[pa.RecordBatch]:
    """Cut already-sorted rows into record batches of about ``batch_bytes`` each."""
    chunk: list[dict] = []
    size = 0
    for r in rows:
        chunk.append(r)
        size += record_bytes(r)
        if size >= batch_bytes:
            yield _to_batch(chunk, schema)
            chunk, size = [], 0
    if chunk:
        yield _to_batch(chunk, schema)


def write_arrow_file(
    uri: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], compression: str = "none"
) -> tuple[int, str]:
    """Write an Arrow IPC file to a temporary name, then rename it to ``uri``.

    Returns:
        (bytes, xxh3-128 hex) of the file as written.
    """
    options = pa.ipc.IpcWriteOptions(compression=None if compression == "none" else compression)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema, options=options) as writer:
        for b in batches:
            writer.write_batch(b)
    buf = sink.getvalue()
    digest = xxh3_128_hex(memoryview(buf))
    atomic_write(uri, memoryview(buf))
    return buf.size, digest


class _WriteShardFn(beam.DoFn):
    def __init__(self, out_dir: str, subdir: str, schema: pa.Schema, cfg: SinkConfig, prefix: str) -> None:
        self._out_dir = out_dir
        self._subdir = subdir
        self._schema = schema
        self._cfg = cfg
        self._prefix = prefix

    def process(self, element: tuple[int, dict[str, Iterable[Any]]], n: int) -> Iterable[dict]:
        idx, groups = element
        rows = sorted(groups["rows"], key=lambda r: (r["id"], r["source"]))
        name = shard_name(idx, n, self._prefix)
        rel = posixpath.join(self._subdir, name)
        nbytes, digest = write_arrow_file(
            join_uri(self._out_dir, rel),
            self._schema,
            rows_to_batches(rows, self._schema, self._cfg.batch_bytes),
            self._cfg.compression,
        )
        _log.info("winnow: wrote %s (%d rows, %d bytes)", rel, len(rows), nbytes)
        yield ShardInfo(rel, len(rows), nbytes, digest).to_json()


class WriteShards(beam.PTransform):
    """Write a PCollection of records as ``OUT/<subdir>/part-XXXXX-of-NNNNN.arrow``.

    Args:
        out_dir: the run's output URI.
        subdir: ``shards``, ``rejects`` or ``dead_letter``.
        schema: the Arrow schema every shard has (missing columns are null).
        cfg: shard and batch sizes, compression.

    Returns a PCollection of shard-info dicts (``path``, ``rows``, ``bytes``, ``xxh3_128``),
    one per shard, including empty shards, so the manifest lists exactly ``n`` files.
    Memory: one worker holds one shard's rows while sorting and writing it (about
    ``shard_bytes`` of records, twice for the encoded buffer).
    """

    def __init__(self, out_dir: str, subdir: str, schema: pa.Schema, cfg: SinkConfig, prefix: str = "part") -> None:
        super().__init__(label=f"Write[{subdir}]")
        self._out_dir = out_dir
        self._subdir = subdir
        self._schema = schema
        self._cfg = cfg
        self._prefix = prefix

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        cfg = self._cfg
        total = records | "Size" >> beam.Map(record_bytes) | "Total" >> beam.CombineGlobally(sum)
        count = total | "Count" >> beam.Map(lambda t: max(cfg.min_shards, math.ceil(t / cfg.shard_bytes)))
        n = beam.pvalue.AsSingleton(count)
        keyed = records | "Assign" >> beam.Map(lambda r, n: (shard_of(r, n), r), n=n)
        slots = count | "Slots" >> beam.FlatMap(lambda k: [(i, None) for i in range(k)])
        grouped = {"rows": keyed, "slot": slots} | "Group" >> beam.CoGroupByKey()
        return grouped | "Write" >> beam.ParDo(
            _WriteShardFn(self._out_dir, self._subdir, self._schema, cfg, self._prefix), n=n
        )

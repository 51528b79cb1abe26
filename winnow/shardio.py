"""Writing shards: Arrow IPC files cut into byte-sized record batches, written atomically.

Beam-free, so the pipeline's sink, the token packer and the loader's synthetic writer all
write shards the same way. Everything here is deterministic: the same rows and schema give
the same bytes.
"""

from __future__ import annotations

import math
import posixpath
import uuid
from typing import Any, Iterable, Sequence

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from winnow.format import xxh3_128_hex

__all__ = [
    "join_uri", "atomic_write", "shard_of", "shard_index", "shard_count", "rows_to_batches",
    "table_to_batches", "conform", "sort_rows", "write_arrow_file", "rows_table",
]

#: Bytes counted per record on top of its text, media, id, source and meta.
ROW_OVERHEAD = 64


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


def shard_index(record_id: str, source: str, n: int) -> int:
    """The shard of a record with this id and source: stable across runs, runners and workers."""
    return xxhash.xxh3_64_intdigest(f"{record_id}\x00{source}".encode("utf-8", "surrogatepass")) % n


def shard_of(record: dict, n: int) -> int:
    """:func:`shard_index` of a record dict."""
    return shard_index(record["id"], record["source"], n)


def shard_count(total_bytes: int, shard_bytes: int, min_shards: int = 1) -> int:
    """Shards for ``total_bytes`` of records: ``ceil(total / shard_bytes)``, at least ``min_shards``."""
    return max(min_shards, math.ceil(total_bytes / shard_bytes))


def _sanitize(record: dict) -> dict:
    # Strings with lone surrogates cannot go into Arrow; replace them visibly.
    return {k: v.encode("utf-8", "replace").decode("utf-8") if isinstance(v, str) else v for k, v in record.items()}


def rows_table(rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """Rows as a table of ``schema`` (missing columns null; lone surrogates replaced)."""
    try:
        return pa.Table.from_pylist(list(rows), schema=schema)
    except UnicodeEncodeError:  # rare: try first, sanitise only on a miss
        return pa.Table.from_pylist([_sanitize(r) for r in rows], schema=schema)


def conform(batch: pa.RecordBatch | pa.Table, schema: pa.Schema) -> pa.Table:
    """A batch with inferred column types as a table of ``schema``: columns in schema order,
    missing ones null, extra ones dropped, each cast to its declared type.

    Raises:
        pa.ArrowInvalid: a value does not fit its declared type.
    """
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    n = table.num_rows
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(n, type=f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def sort_rows(table: pa.Table) -> pa.Table:
    """Rows sorted by (id, source), in one contiguous chunk."""
    if table.num_rows == 0:
        return table.combine_chunks()
    idx = pc.sort_indices(table, sort_keys=[("id", "ascending"), ("source", "ascending")])
    return table.take(idx).combine_chunks()


def _row_sizes(table: pa.Table) -> np.ndarray:
    """The approximate encoded size of each row (as :func:`record_bytes` counts it)."""
    n = table.num_rows
    sizes = np.full(n, ROW_OVERHEAD, dtype=np.int64)
    for name in ("id", "source", "meta", "text", "image", "audio"):
        if name in table.column_names:
            lengths = pc.binary_length(table.column(name)) if not pa.types.is_null(table.column(name).type) else None
            if lengths is not None:
                sizes += np.nan_to_num(lengths.to_numpy(zero_copy_only=False).astype(np.float64)).astype(np.int64)
    return sizes


def table_to_batches(table: pa.Table, batch_bytes: int) -> Iterable[pa.RecordBatch]:
    """Cut a table into record batches: each ends at the first row that brings it to
    ``batch_bytes`` or more (the last one may be smaller)."""
    n = table.num_rows
    if n == 0:
        return
    table = table.combine_chunks()
    csum = np.cumsum(_row_sizes(table))
    start = 0
    while start < n:
        base = csum[start - 1] if start else 0
        end = int(np.searchsorted(csum, base + batch_bytes, side="left")) + 1
        end = min(max(end, start + 1), n)
        for b in table.slice(start, end - start).to_batches():
            yield b
        start = end


def rows_to_batches(rows: Sequence[dict], schema: pa.Schema, batch_bytes: int) -> Iterable[pa.RecordBatch]:
    """Cut already-sorted rows into record batches of about ``batch_bytes`` each."""
    yield from table_to_batches(rows_table(rows, schema), batch_bytes)


def write_arrow_file(uri: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch],
                     compression: str | None = "none") -> tuple[int, str]:
    """Write an Arrow IPC file to a temporary name, then rename it to ``uri``.

    Returns:
        (bytes, xxh3-128 hex) of the file as written.
    """
    codec: Any = None if compression in (None, "none") else compression
    options = pa.ipc.IpcWriteOptions(compression=codec)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema, options=options) as writer:
        for b in batches:
            writer.write_batch(b)
    buf = sink.getvalue()
    digest = xxh3_128_hex(memoryview(buf))
    atomic_write(uri, memoryview(buf))
    return buf.size, digest

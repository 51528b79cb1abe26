"""Writing shards: Arrow IPC files cut into byte-sized record batches, written atomically.

Beam-free, so the pipeline's sink, the token packer and the loader's synthetic writer all
write shards the same way. Everything here is deterministic: the same rows and schema give
the same bytes.
"""

from __future__ import annotations

import io
import math
import posixpath
import uuid
from typing import Any, Iterable, Sequence

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

__all__ = [
    "join_uri", "atomic_write", "shard_of", "shard_index", "shard_count", "rows_to_batches",
    "table_to_batches", "row_sizes", "conform", "sort_rows", "sort_order", "write_arrow_file", "rows_table",
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
    return table.take(sort_order(table)).combine_chunks()


def sort_order(table: pa.Table) -> pa.Array:
    """The row indices that sort ``table`` by (id, source)."""
    return pc.sort_indices(table, sort_keys=[("id", "ascending"), ("source", "ascending")])


def row_sizes(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """The approximate encoded size of each row: what ``record_bytes`` counts for the same
    record (64 plus the UTF-8 bytes of id, source, meta and text and the bytes of media)."""
    sizes = np.full(table.num_rows, ROW_OVERHEAD, dtype=np.int64)
    for name in ("id", "source", "meta", "text", "image", "audio"):
        if name not in table.schema.names:
            continue
        col = table.column(name)
        t = col.type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                or pa.types.is_large_binary(t)):
            continue
        lengths = pc.fill_null(pc.binary_length(col), 0)
        sizes += lengths.to_numpy(zero_copy_only=False).astype(np.int64)
    return sizes


def _cuts(sizes: np.ndarray, batch_bytes: int) -> Iterable[tuple[int, int]]:
    # each batch ends at the first row that brings it to batch_bytes or more
    n = len(sizes)
    csum = np.cumsum(sizes)
    start = 0
    while start < n:
        base = csum[start - 1] if start else 0
        end = int(np.searchsorted(csum, base + batch_bytes, side="left")) + 1
        end = min(max(end, start + 1), n)
        yield start, end
        start = end


def table_to_batches(table: pa.Table, batch_bytes: int, order: pa.Array | None = None) -> Iterable[pa.RecordBatch]:
    """Cut a table into record batches: each ends at the first row that brings it to
    ``batch_bytes`` or more (the last one may be smaller).

    Args:
        order: row indices to emit the rows in (for example :func:`sort_order`); the rows
            are gathered one batch at a time, so a sorted copy of the whole table is never made.
    """
    if table.num_rows == 0:
        return
    if order is None:
        table = table.combine_chunks()
        for start, end in _cuts(row_sizes(table), batch_bytes):
            yield from table.slice(start, end - start).to_batches()
        return
    order_np = order.to_numpy(zero_copy_only=False).astype(np.int64)
    sizes = row_sizes(table)[order_np]
    # Gather chunk by chunk: a take on a chunked column would first concatenate the whole
    # column, once per output batch (a shard-sized copy each time).
    chunks = [c for c in table.to_batches() if c.num_rows]
    offsets = np.cumsum([0] + [c.num_rows for c in chunks])
    for start, end in _cuts(sizes, batch_bytes):
        yield _gather(chunks, offsets, order_np[start:end])


def _gather(chunks: Sequence[pa.RecordBatch], offsets: np.ndarray, idx: np.ndarray) -> pa.RecordBatch:
    """Rows ``idx`` (indices into the concatenation of ``chunks``) as one record batch."""
    chunk_of = np.searchsorted(offsets, idx, side="right") - 1
    by_chunk = np.argsort(chunk_of, kind="stable")
    grouped_chunk = chunk_of[by_chunk]
    bounds = np.flatnonzero(np.diff(grouped_chunk)) + 1
    pieces = []
    for part in np.split(by_chunk, bounds):
        k = int(chunk_of[part[0]])
        pieces.append(chunks[k].take(pa.array(idx[part] - offsets[k])))
    gathered = pa.Table.from_batches(pieces).combine_chunks()
    back = np.empty_like(by_chunk)
    back[by_chunk] = np.arange(len(by_chunk))
    out = gathered.take(pa.array(back)).combine_chunks().to_batches()
    return out[0] if len(out) == 1 else pa.Table.from_batches(out).combine_chunks().to_batches()[0]


def rows_to_batches(rows: Sequence[dict], schema: pa.Schema, batch_bytes: int) -> Iterable[pa.RecordBatch]:
    """Cut already-sorted rows into record batches of about ``batch_bytes`` each."""
    yield from table_to_batches(rows_table(rows, schema), batch_bytes)


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes (xxh3-128) and counts what passes through it."""

    def __init__(self, fh: Any) -> None:
        super().__init__()
        self._fh = fh
        self.hasher = xxhash.xxh3_128()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hasher.update(view)
        self.size += view.nbytes
        self._fh.write(view)
        return view.nbytes


def write_arrow_file(uri: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch],
                     compression: str | None = "none") -> tuple[int, str]:
    """Write an Arrow IPC file to a temporary name beside ``uri``, then rename it into place.

    The file is streamed batch by batch (never held whole in memory) and hashed as it is
    written; a failure leaves no file under ``uri`` and removes the temporary one.

    Returns:
        (bytes, xxh3-128 hex) of the file as written.
    """
    codec: Any = None if compression in (None, "none") else compression
    options = pa.ipc.IpcWriteOptions(compression=codec)
    fs, path = fsspec.core.url_to_fs(uri)
    parent = posixpath.dirname(path)
    fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
    try:
        with fs.open(tmp, "wb") as fh:
            out = _HashingWriter(fh)
            with pa.ipc.new_file(pa.PythonFile(out, mode="w"), schema, options=options) as writer:
                for b in batches:
                    writer.write_batch(b)
        fs.mv(tmp, path)
    except BaseException:
        try:
            fs.rm(tmp)
        except (OSError, FileNotFoundError):
            pass
        raise
    return out.size, out.hasher.hexdigest()

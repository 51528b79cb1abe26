"""Reading rows out of one memory-mapped Arrow IPC shard, column by column, without copies.

A :class:`ShardReader` maps the file and, per record batch, prepares a *gatherer* per column:

* fixed-width numbers without nulls: a NumPy view of the mapped values;
* lists of numbers (``list``, ``large_list``, ``fixed_size_list``) without nulls: the offsets and
  values as NumPy views, and a 2-D ``(rows, length)`` view when every list has one length;
* anything else (strings, binaries, nullable columns): Arrow ``take``, then Python objects.

Uncompressed shards are zero-copy. Compressed shards decode one record batch at a time into a
bounded LRU that the caller owns (see :mod:`winnow.cache.memory`).
"""

from __future__ import annotations

import os

from typing import Any, Callable

import numpy as np
import pyarrow as pa

__all__ = ["ColumnView", "BatchView", "ShardReader", "column_kind"]



_ADVISED: set[str] = set()  # shards this process has already asked the kernel to read ahead


def _read_ahead(path: str) -> None:
    """Ask the kernel to read the whole file into the page cache in the background, on this
    process's first touch of an L2 shard: random reads that follow then hit memory instead of
    waiting on the disk one 4 KiB page at a time. Once per shard and process (re-mapping a shard
    after an L1 eviction does not walk its pages again). Advisory; a platform without
    ``posix_fadvise`` just skips it."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None or path in _ADVISED:
        return
    if len(_ADVISED) > 100_000:
        _ADVISED.clear()
    _ADVISED.add(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def column_kind(t: pa.DataType) -> str:
    """The gather strategy a column type allows, before looking at the data."""
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "fixed"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        vt = t.value_type
        if pa.types.is_integer(vt) or pa.types.is_floating(vt):
            return "ragged"
    return "object"


class ColumnView:
    """NumPy views of one column of one record batch."""

    __slots__ = ("kind", "values", "offsets", "width", "arrow")

    def __init__(self, arr: pa.Array, kind: str) -> None:
        self.arrow = arr
        self.values: np.ndarray | None = None
        self.offsets: np.ndarray | None = None
        self.width = -1
        self.kind = "object"
        if kind == "fixed" and arr.null_count == 0:
            self.values = arr.to_numpy(zero_copy_only=True)
            self.kind = "fixed"
        elif kind == "ragged" and arr.null_count == 0 and arr.values.null_count == 0:
            if pa.types.is_fixed_size_list(arr.type):
                w = arr.type.list_size
                flat = arr.flatten().to_numpy(zero_copy_only=True)
                self.values = flat.reshape(len(arr), w)
                self.offsets = np.arange(0, (len(arr) + 1) * w, w, dtype=np.int64)
                self.width, self.kind = w, "fixed2d"
                return
            offs = np.frombuffer(arr.buffers()[1], dtype=np.int64 if pa.types.is_large_list(arr.type) else np.int32)
            offs = offs[arr.offset:arr.offset + len(arr) + 1]
            vals = arr.values.to_numpy(zero_copy_only=True)
            lengths = np.diff(offs)
            if len(arr) and (lengths == lengths[0]).all():
                w = int(lengths[0])
                base = int(offs[0])
                self.values = vals[base:base + w * len(arr)].reshape(len(arr), w)
                self.width, self.kind = w, "fixed2d"
            else:
                self.values = vals
                self.kind = "ragged"
            self.offsets = offs.astype(np.int64, copy=False)


class BatchView:
    """Gatherers for every requested column of one record batch."""

    __slots__ = ("rows", "columns", "nbytes")

    def __init__(self, batch: pa.RecordBatch, kinds: dict[str, str]) -> None:
        self.rows = batch.num_rows
        self.columns = {name: ColumnView(batch.column(name), kind) for name, kind in kinds.items()}
        self.nbytes = batch.nbytes


class ShardReader:
    """One memory-mapped shard.

    Args:
        path: the cached Arrow IPC file.
        kinds: column name -> kind from :func:`column_kind`.
        compressed: whether record batches must be decoded (not zero-copy).
        batch_cache: for compressed shards, ``get(key, make)`` returning a cached
            :class:`BatchView` or building and caching one.
        key: a stable name for this shard (its checksum) used in ``batch_cache`` keys.
        row_counts: rows per record batch if known (saves a decoding pass on compressed shards).
    """

    def __init__(self, path: str, kinds: dict[str, str], *, compressed: bool,
                 batch_cache: Any = None, key: str = "", row_counts: list[int] | None = None) -> None:
        self.path = path
        self.kinds = kinds
        self.key = key
        self.compressed = compressed
        _read_ahead(path)
        self._mm = pa.memory_map(path, "r")
        self._reader = pa.ipc.open_file(self._mm)
        self._cache = batch_cache
        n = self._reader.num_record_batches
        self._views: list[BatchView | None] = [None] * n
        if not compressed:
            for i in range(n):
                self._views[i] = BatchView(self._reader.get_batch(i), kinds)
            counts = [v.rows for v in self._views]  # type: ignore[union-attr]
        elif row_counts is not None:
            counts = list(row_counts)
        else:
            counts = [self._reader.get_batch(i).num_rows for i in range(n)]
        self.row_counts = counts
        self.batch_start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=self.batch_start[1:])
        self.rows = int(self.batch_start[-1])
        self.single = n == 1
        self.mapped_bytes = self._mm.size()
        self.direct = self._direct_gatherers() if not compressed else None

    def _direct_gatherers(self) -> dict[str, tuple[np.ndarray, np.ndarray | None]] | None:
        """Per column, an array to index rows of the whole shard with, whatever its record batches.

        ``(values, None)`` for a single-batch shard (rows index ``values`` directly);
        ``(file_rows, first)`` for several batches: ``file_rows`` views the whole mapped file
        as overlapping rows of ``width`` numbers starting at every element, and ``first[b]`` is
        the element where batch ``b``'s first row starts, so row ``r`` of batch ``b`` is
        ``file_rows[first[b] + r * width]``: one fancy index per shard and column, however many
        batches the shard has. None when a column is not plain numbers of one width in every
        batch (the generic gather handles it).
        """
        views = self._views
        if not views or any(v is None for v in views):
            return None
        out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        flat_by_dtype: dict[np.dtype, np.ndarray] = {}
        for name in self.kinds:
            cvs = [v.columns[name] for v in views]  # type: ignore[union-attr]
            c0 = cvs[0]
            if c0.kind not in ("fixed", "fixed2d") or any(
                    c.kind != c0.kind or c.width != c0.width or c.values.dtype != c0.values.dtype for c in cvs):
                return None
            if len(cvs) == 1:
                out[name] = (c0.values, None)
                continue
            dt = c0.values.dtype
            flat = flat_by_dtype.get(dt)
            if flat is None:
                self._mm.seek(0)
                whole = self._mm.read_buffer(self._mm.size())  # zero-copy slice of the mapping
                flat = flat_by_dtype[dt] = np.frombuffer(whole, dtype=dt, count=len(whole) // dt.itemsize)
            base = flat.ctypes.data
            first = []
            for c in cvs:
                delta = c.values.ctypes.data - base
                if delta % dt.itemsize or c.width == 0:
                    return None
                first.append(delta // dt.itemsize)
            if c0.kind == "fixed2d":
                rows_view = np.lib.stride_tricks.sliding_window_view(flat, c0.width)
                out[name] = (rows_view, np.asarray(first, dtype=np.int64))
            else:
                out[name] = (flat, np.asarray(first, dtype=np.int64))
        return out

    def view(self, i: int) -> BatchView:
        """The gatherers of record batch ``i`` (decoded through the LRU if compressed)."""
        v = self._views[i]
        if v is not None:
            return v
        make: Callable[[], BatchView] = lambda: BatchView(self._reader.get_batch(i), self.kinds)
        return self._cache.get((self.key, i), make)

    def close(self) -> None:
        """Drop the mapping (buffers still referenced elsewhere keep it alive until freed)."""
        self._views = []
        self.direct = None
        self._reader = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None

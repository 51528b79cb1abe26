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

import mmap
import os
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import pyarrow as pa

__all__ = ["ColumnView", "BatchView", "ShardReader", "column_kind", "warm_layout"]



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


#: Parsed layouts of uncompressed shards this process has opened, keyed by the file's identity
#: (path, device, inode, size; a cached shard is named by its checksum and replaced only by
#: rename): the file's footer bytes, rows per record batch and, for shards the direct gather
#: serves, each column's dtype, width and first element per batch. Re-opening a shard after an L1
#: eviction maps the file, checks that its header magic and footer are byte for byte the ones
#: parsed before (a footer damaged in place is parsed, and rejected, again) and slices the
#: mapping, without parsing the Arrow structure again.
_LAYOUTS: OrderedDict[tuple[Any, ...], tuple[bytes, list[int], list[tuple[str, str, int, np.ndarray]] | None]] = \
    OrderedDict()
_MAGIC = b"ARROW1"
_LAYOUTS_MAX = 4096


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

    The Arrow structure is parsed the first time this process opens the file; later opens of the
    same file reuse the parsed layout (see ``_LAYOUTS``), and uncompressed batches' views are
    built only when the generic gather asks for them.
    """

    def __init__(self, path: str, kinds: dict[str, str], *, compressed: bool,
                 batch_cache: Any = None, key: str = "", row_counts: list[int] | None = None) -> None:
        self.path = path
        self.kinds = kinds
        self.key = key
        self.compressed = compressed
        _read_ahead(path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if st.st_size == 0:
                raise pa.ArrowInvalid(f"{path} is empty, not an Arrow IPC file")
            self._mmap: mmap.mmap | None = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self.mapped_bytes = st.st_size
        self._reader: Any = None
        self._cache = batch_cache
        ident = (path, st.st_dev, st.st_ino, st.st_size, tuple(kinds.items()))
        lay = None if compressed else _LAYOUTS.get(ident)
        if lay is not None and (self._mmap[:6] != _MAGIC or self._mmap[-len(lay[0]):] != lay[0]):
            lay = None  # the header or footer changed in place: parse (and so check) it again
        recipe = None
        if lay is not None:
            _, counts, recipe = lay
            self._views: list[BatchView | None] = [None] * len(counts)
        else:
            reader = self._arrow()
            n = reader.num_record_batches
            self._views = [None] * n
            if not compressed:
                for i in range(n):
                    self._views[i] = BatchView(reader.get_batch(i), kinds)
                counts = [v.rows for v in self._views]  # type: ignore[union-attr]
            elif row_counts is not None:
                counts = list(row_counts)
            else:
                counts = [reader.get_batch(i).num_rows for i in range(n)]
        self.row_counts = counts
        self.batch_start = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.batch_start[1:])
        self.rows = int(self.batch_start[-1])
        self.single = len(counts) == 1
        self.direct: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None
        if compressed:
            return
        if lay is None:
            recipe = self._direct_recipe()
            tail = int.from_bytes(self._mmap[-10:-6], "little") + 10  # footer, its length, the magic
            if 10 < tail <= st.st_size:
                _LAYOUTS[ident] = (self._mmap[-tail:], counts, recipe)
            while len(_LAYOUTS) > _LAYOUTS_MAX:
                _LAYOUTS.popitem(last=False)
        else:
            _LAYOUTS.move_to_end(ident)
        if recipe is not None:
            self.direct = self._direct_from(recipe)

    def _arrow(self) -> Any:
        """The Arrow reader over the mapping (zero-copy), opened on first use."""
        if self._reader is None:
            self._reader = pa.ipc.open_file(pa.BufferReader(pa.py_buffer(self._mmap)))
        return self._reader

    def _flat(self, dt: np.dtype) -> np.ndarray:
        assert self._mmap is not None
        return np.frombuffer(self._mmap, dtype=dt, count=self.mapped_bytes // dt.itemsize)

    def _direct_recipe(self) -> list[tuple[str, str, int, np.ndarray]] | None:
        """Per column ``(name, dtype, width, first)``: the column's rows are plain numbers of one
        dtype and ``width`` (0: one number a row) in every batch, and batch ``b`` starts at element
        ``first[b]`` of the whole mapped file viewed as that dtype. None when a column is not plain
        numbers of one width in every batch (the generic gather handles it)."""
        views = self._views
        if not views or any(v is None for v in views):
            return None
        out = []
        bases: dict[np.dtype, int] = {}
        for name in self.kinds:
            cvs = [v.columns[name] for v in views]  # type: ignore[union-attr]
            c0 = cvs[0]
            if c0.kind not in ("fixed", "fixed2d") or any(
                    c.kind != c0.kind or c.width != c0.width or c.values.dtype != c0.values.dtype for c in cvs):
                return None
            dt = c0.values.dtype
            if dt not in bases:
                bases[dt] = self._flat(dt).ctypes.data
            first = []
            for c in cvs:
                delta = c.values.ctypes.data - bases[dt]
                if delta % dt.itemsize or c.width == 0 or not 0 <= delta < self.mapped_bytes:
                    return None
                first.append(delta // dt.itemsize)
            out.append((name, dt.str, c0.width if c0.kind == "fixed2d" else 0, np.asarray(first, dtype=np.int64)))
        return out

    def _direct_from(self, recipe: list[tuple[str, str, int, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Per column, an array to index rows of the whole shard with, whatever its record batches.

        ``(values, None)`` for a single-batch shard (rows index ``values`` directly);
        ``(file_rows, first)`` for several batches: ``file_rows`` views the whole mapped file
        as overlapping rows of ``width`` numbers starting at every element, and ``first[b]`` is
        the element where batch ``b``'s first row starts, so row ``r`` of batch ``b`` is
        ``file_rows[first[b] + r * width]``: one fancy index per shard and column, however many
        batches the shard has.
        """
        out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        flats: dict[str, np.ndarray] = {}
        for name, dts, width, first in recipe:
            flat = flats.get(dts)
            if flat is None:
                flat = flats[dts] = self._flat(np.dtype(dts))
            if self.single:
                f0, n = int(first[0]), self.rows
                out[name] = (flat[f0:f0 + n * width].reshape(n, width) if width else flat[f0:f0 + n], None)
            elif width:
                out[name] = (np.lib.stride_tricks.sliding_window_view(flat, width), first)
            else:
                out[name] = (flat, first)
        return out

    def view(self, i: int) -> BatchView:
        """The gatherers of record batch ``i`` (decoded through the LRU if compressed)."""
        v = self._views[i]
        if v is not None:
            return v
        if not self.compressed:
            v = self._views[i] = BatchView(self._arrow().get_batch(i), self.kinds)
            return v
        make: Callable[[], BatchView] = lambda: BatchView(self._arrow().get_batch(i), self.kinds)
        return self._cache.get((self.key, i), make)

    def close(self) -> None:
        """Drop the mapping (arrays still viewing it keep it alive until freed)."""
        self._views = []
        self.direct = None
        self._reader = None
        mm, self._mmap = self._mmap, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # exported to arrays still alive: unmapped when the last one goes
                pass


def warm_layout(path: str, kinds: dict[str, str], size: int) -> bool:
    """Parse an uncompressed shard's layout into this process's cache (and read it ahead) unless
    it is there already; True if it was parsed now. For a thread ahead of the reader."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_size != size or (path, st.st_dev, st.st_ino, st.st_size, tuple(kinds.items())) in _LAYOUTS:
        return False
    ShardReader(path, kinds, compressed=False).close()
    return True

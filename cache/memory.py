"""L1, memory: mapped shards and decoded record batches under one byte budget, and the gather.

:class:`MemoryTier` turns a step's sample ids into column arrays. It keeps recently used shards
memory-mapped (an L1 hit costs a dict lookup), asks the L2 cache for the others (which may fetch
from L3), and unmaps the least recently used shards when the mapped bytes plus the decoded
batches of compressed shards exceed ``memory_limit``. Samples of one step are grouped by shard
(stable within a shard), so a step costs one vectorised ``take`` per shard and column; the
step's ``_index`` array says which sample landed where.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import xxhash

from winnow.errors import ChecksumError
from winnow.format import Manifest

from winnow.cache.metrics import Metrics
from winnow.cache.remote import Remote
from winnow.cache.shard import BatchView, ShardReader, column_kind, warm_layout
from winnow.cache.store import DiskCache, Lease

__all__ = ["BatchLRU", "MemoryTier", "RaggedRefs", "INDEX_KEY"]

#: Key of the int64 array of global sample ids in every gathered step.
INDEX_KEY = "_index"


class BatchLRU:
    """Decoded record batches of compressed shards, least recently used first out."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = int(limit)
        self.bytes = 0
        self._items: OrderedDict[Any, BatchView] = OrderedDict()
        self._m = metrics

    def get(self, key: Any, make: Callable[[], BatchView]) -> BatchView:
        v = self._items.get(key)
        if v is not None:
            self._items.move_to_end(key)
            self._m.batch_hits += 1
            return v
        v = make()
        self._m.batch_decodes += 1
        self._items[key] = v
        self.bytes += v.nbytes
        while self.bytes > self.limit and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self.bytes -= old.nbytes
        return v

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0


class MemoryTier:
    """The per-process reader over the L2 cache.

    Args:
        manifest: the dataset's manifest.
        columns: columns to read (None: all).
        cache: the node's L2 cache.
        remote: the object store.
        memory_limit: byte budget for mapped shards plus decoded batches.
        verify: ``"fetch"`` checks xxh3 on download and size on every use; ``"open"`` also
            hashes each cached shard the first time this process maps it.
        metrics: counters to update.
    """

    def __init__(self, manifest: Manifest, columns: list[str] | None, cache: DiskCache, remote: Remote,
                 memory_limit: int, verify: str, metrics: Metrics) -> None:
        self.infos = manifest.shards
        self.offsets = np.zeros(len(self.infos) + 1, dtype=np.int64)
        np.cumsum([s.rows for s in self.infos], out=self.offsets[1:])
        names = columns if columns is not None else manifest.schema.names
        self.kinds = {n: column_kind(manifest.schema.field(n).type) for n in names}
        self.compressed = bool(manifest.compression)
        self.cache, self.remote, self.verify, self.m = cache, remote, verify, metrics
        self.limit = int(memory_limit)
        self.batches = BatchLRU(self.limit // 2 if self.compressed else 0, metrics)
        self.shard_budget = self.limit - self.batches.limit
        self.open: OrderedDict[int, tuple[ShardReader, Lease]] = OrderedDict()
        self.mapped = 0
        self._row_counts: dict[int, list[int]] = {}
        self._verified: set[str] = set()
        self.pid = os.getpid()

    # --- shards ------------------------------------------------------------------------
    def reader(self, s: int, pinned: Any = ()) -> ShardReader:
        """The mapped shard ``s``, opening (and if needed fetching) it on an L1 miss."""
        e = self.open.get(s)
        if e is not None:
            self.open.move_to_end(s)
            self.m.l1_hits += 1
            return e[0]
        t0 = time.perf_counter()
        info = self.infos[s]
        for attempt in range(3):
            lease = self.cache.lease(info, self.remote.download)
            self.m.bytes_fetched += lease.fetched_bytes
            self.m.fetch_retries += lease.retries
            self.m.checksum_failures += lease.checksum_failures
            try:
                if self.verify == "open" and info.xxh3_128 not in self._verified:
                    with open(lease.path, "rb") as f:
                        digest = xxhash.xxh3_128_hexdigest(f.read())
                    if digest != info.xxh3_128:
                        raise ChecksumError(f"cached {info.path} hashes to {digest}, manifest says {info.xxh3_128}")
                    self._verified.add(info.xxh3_128)
                rd = ShardReader(lease.path, self.kinds, compressed=self.compressed, batch_cache=self.batches,
                                 key=info.xxh3_128, row_counts=self._row_counts.get(s))
                if rd.rows != info.rows:
                    raise ChecksumError(f"cached {info.path} has {rd.rows} rows, manifest says {info.rows}")
                break
            except (ChecksumError, pa.ArrowInvalid, OSError) as exc:
                lease.release()
                self.m.corrupt_refetches += 1
                self.cache.invalidate(info)
                if attempt == 2:
                    raise ChecksumError(
                        f"shard {info.path} in {self.cache.root} is unreadable after 3 fresh downloads ({exc}); "
                        "the object in the store does not match its manifest entry"
                    ) from exc
        if lease.tier == "l3":
            self.m.l3_fetches += 1
        else:
            self.m.l2_hits += 1
        self._row_counts[s] = rd.row_counts
        self.open[s] = (rd, lease)
        self.mapped += rd.mapped_bytes
        self._trim(pinned)
        self.m.stall_s += time.perf_counter() - t0
        return rd

    def warm(self, s: int) -> None:
        """Parse shard ``s``'s layout and have it read ahead, if it is cached and not mapped here
        (from the prefetch threads, ahead of the reader: its own open then maps and slices)."""
        if self.compressed or s in self.open or self.verify == "open":
            return
        info = self.infos[s]
        path = self.cache.object_path(info.xxh3_128)
        warm_layout(path, self.kinds, info.bytes)

    def _trim(self, pinned: Any) -> None:
        for s in list(self.open):
            if self.mapped <= self.shard_budget or len(self.open) <= 1:
                break
            if s in pinned:
                continue
            rd, lease = self.open.pop(s)
            self.mapped -= rd.mapped_bytes
            rd.close()
            lease.release()
            self.m.l1_evictions += 1

    def drop(self) -> None:
        """Unmap every shard and release every lease (L1 emptied; L2 untouched)."""
        for rd, lease in self.open.values():
            rd.close()
            lease.release()
        self.open.clear()
        self.batches.clear()
        self.mapped = 0

    def abandon(self) -> None:
        """After a fork: forget the parent's maps and close (not unlock) inherited descriptors."""
        for _, lease in self.open.values():
            lease.release()
        self.open.clear()
        self.batches.clear()
        self.mapped = 0

    # --- gather ------------------------------------------------------------------------
    def gather(self, ids: np.ndarray, into: dict[str, np.ndarray] | None = None, refs: bool = False) -> dict[str, Any]:
        """Column arrays for the samples ``ids`` (global ids), grouped by shard.

        Args:
            ids: global sample ids.
            into: optional destination arrays, one per column and ``INDEX_KEY``, of ``len(ids)``
                rows; filled in place (and returned) when every column gathers directly.
            refs: a ragged column of uncompressed shards comes as :class:`RaggedRefs` (where its
                rows are, not yet copied) instead of ``(values, offsets)``.

        Returns:
            ``{column: array or list, INDEX_KEY: int64 ids in output order}``; equal-length
            number lists come as 2-D arrays, ragged ones as ``(values, offsets)`` tuples. It is
            ``into`` itself when ``into`` was filled, else new arrays.
        """
        shard = self.offsets.searchsorted(ids, side="right") - 1
        s0 = int(shard[0])
        if (shard == s0).all():
            groups = [(s0, ids - self.offsets[s0])]
            out_ids = ids
        else:
            order = shard.argsort(kind="stable")
            out_ids = ids[order]
            ss = shard[order]
            rows_all = out_ids - self.offsets[ss]
            cut = (np.flatnonzero(ss[1:] != ss[:-1]) + 1).tolist()
            bounds = [0, *cut, len(ss)]
            ssl = ss[bounds[:-1]].tolist()
            groups = [(ssl[j], rows_all[bounds[j]:bounds[j + 1]]) for j in range(len(ssl))]
        if into is not None and not all(
                name in into and into[name].shape[0] == len(ids) for name in (*self.kinds, INDEX_KEY)):
            into = None
        out = self._gather_direct(groups, len(ids), into)
        if out is not None:
            if into is not None:
                into[INDEX_KEY][:] = out_ids
                return into
            out[INDEX_KEY] = out_ids
            return out
        return self._gather_views(ids, out_ids, groups, refs and not self.compressed)

    def _gather_direct(self, groups: list[tuple[int, np.ndarray]], n: int,
                       into: dict[str, np.ndarray] | None = None) -> dict[str, Any] | None:
        """The common case in one fancy index per shard and column: every column plain numbers
        of one width (uncompressed shards). None when some shard or column does not allow it."""
        pinned = {g[0] for g in groups} if len(groups) > 1 else (groups[0][0],)
        readers = []
        for s, _ in groups:
            e = self.open.get(s)
            if e is None:
                rd = self.reader(s, pinned)
            else:
                self.open.move_to_end(s)
                self.m.l1_hits += 1
                rd = e[0]
            if rd.direct is None:
                return None
            readers.append(rd)
        out: dict[str, Any] = {}
        for name in self.kinds:
            arr0 = readers[0].direct[name][0]
            shape = (n, *arr0.shape[1:])
            if into is None and len(groups) == 1 and readers[0].direct[name][1] is None:
                rows = groups[0][1]
                out[name] = arr0.take(rows, axis=0) if arr0.flags.c_contiguous else arr0[rows]
                continue
            if into is not None:
                dst = into[name]
                if dst.shape != shape or dst.dtype != arr0.dtype:
                    return None
            else:
                dst = np.empty(shape, dtype=arr0.dtype)
            a = 0
            for rd, (_, rows) in zip(readers, groups):
                arr, first = rd.direct[name]
                if arr.shape[1:] != shape[1:] or arr.dtype != dst.dtype:
                    return None
                b = a + len(rows)
                if first is None:
                    arr.take(rows, axis=0, out=dst[a:b], mode="clip")  # rows are in range; "raise" would buffer
                else:
                    bi = rd.batch_start.searchsorted(rows, side="right") - 1
                    width = arr.shape[1] if arr.ndim == 2 else 1
                    dst[a:b] = arr[first[bi] + (rows - rd.batch_start[bi]) * width]
                a = b
            out[name] = dst
        return out

    def _gather_views(self, ids: np.ndarray, out_ids: np.ndarray, groups: list[tuple[int, np.ndarray]],
                      refs: bool = False) -> dict[str, Any]:
        """Any column type: per shard, per record batch (decoded through the LRU if compressed)."""
        pinned = {g[0] for g in groups}
        parts: list[tuple[BatchView, np.ndarray]] = []
        for s, rows in groups:
            rd = self.reader(s, pinned)
            if rd.single:
                parts.append((rd.view(0), rows))
                continue
            b = np.searchsorted(rd.batch_start, rows, side="right") - 1
            if b[0] == b[-1] and (b == b[0]).all():
                parts.append((rd.view(int(b[0])), rows - rd.batch_start[b[0]]))
                continue
            # rows of one shard are in epoch order, not sorted: keep that order, batch by batch
            order = np.argsort(b, kind="stable")
            bs = b[order]
            cut = np.flatnonzero(bs[1:] != bs[:-1]) + 1
            bounds = np.concatenate(([0], cut, [len(bs)]))
            start = len(parts)
            for a, c in zip(bounds[:-1], bounds[1:]):
                bi = int(bs[a])
                parts.append((rd.view(bi), rows[order[a:c]] - rd.batch_start[bi]))
            if len(parts) - start > 1:  # reorder this shard's ids to match
                base = sum(len(r) for _, r in parts[:start])
                seg = out_ids[base:base + len(rows)]
                out_ids = out_ids.copy() if out_ids is ids else out_ids
                out_ids[base:base + len(rows)] = seg[order]
        out: dict[str, Any] = {INDEX_KEY: out_ids}
        n = len(ids)
        for name in self.kinds:
            out[name] = _assemble([(p.columns[name], r) for p, r in parts], n, refs)
        return out


def _assemble(parts: list[tuple[Any, np.ndarray]], n: int, refs: bool = False) -> Any:
    """Concatenate one column's rows from several parts with one copy where possible."""
    k0 = parts[0][0].kind
    if k0 == "fixed2d" and all(cv.kind == "fixed2d" and cv.width == parts[0][0].width for cv, _ in parts):
        if len(parts) == 1:
            return parts[0][0].values.take(parts[0][1], axis=0)
        out = np.empty((n, parts[0][0].width), dtype=parts[0][0].values.dtype)
        a = 0
        for cv, rows in parts:
            b = a + len(rows)
            cv.values.take(rows, axis=0, out=out[a:b], mode="clip")  # rows are in range; "raise" would buffer `out`
            a = b
        return out
    if k0 == "fixed" and all(cv.kind == "fixed" for cv, _ in parts):
        if len(parts) == 1:
            return np.take(parts[0][0].values, parts[0][1])
        return np.concatenate([np.take(cv.values, rows) for cv, rows in parts])
    if all(cv.kind in ("fixed2d", "ragged") for cv, _ in parts):
        return _ragged(parts, n, refs)
    vals: list[Any] = []
    for cv, rows in parts:
        vals.extend(cv.arrow.take(pa.array(rows)).to_pylist())
    return vals


class RaggedRefs:
    """A ragged column's rows located but not copied: ``parts`` holds, per shard part in output
    order, ``(flat, starts, lens)``: a flat values array (a view of the mapped shard) and each
    row's start and length in it. :class:`~winnow.cache.packing.TokenPacker` copies the rows once,
    straight into its packed batch, instead of gathering them into a step first."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        self.parts = parts

    def lengths(self) -> np.ndarray:
        """Each row's length, in output order."""
        return np.concatenate([ln for _, _, ln in self.parts]) if len(self.parts) > 1 else self.parts[0][2]

    def rows(self) -> list[np.ndarray]:
        """Each row as a view (output order)."""
        return [flat[a:a + k] for flat, s, ln in self.parts for a, k in zip(s.tolist(), ln.tolist())]

    def __len__(self) -> int:
        return sum(len(ln) for _, _, ln in self.parts)


def _ragged(parts: list[tuple[Any, np.ndarray]], n: int, refs: bool = False) -> Any:
    starts_l, lens_l = [], []
    for cv, rows in parts:
        if cv.kind == "fixed2d":
            starts_l.append(rows.astype(np.int64) * cv.width)
            lens_l.append(np.full(len(rows), cv.width, dtype=np.int64))
        else:
            s = cv.offsets[rows]
            starts_l.append(s - cv.offsets[0])
            lens_l.append(cv.offsets[rows + 1] - s)
    if refs:
        return RaggedRefs([(cv.values.reshape(-1) if cv.kind == "fixed2d" else cv.values[int(cv.offsets[0]):], s, ln)
                           for (cv, _), s, ln in zip(parts, starts_l, lens_l)])
    lens = np.concatenate(lens_l)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    dtype = parts[0][0].values.dtype
    values = np.empty(int(offsets[-1]), dtype=dtype)
    a = 0
    for (cv, rows), s, ln in zip(parts, starts_l, lens_l):
        m = int(ln.sum())
        if cv.kind == "fixed2d":
            cv.values.take(rows, axis=0, out=values[a:a + m].reshape(len(rows), cv.width), mode="clip")
        elif m >= _SLICE_ROWS_FROM * len(rows):
            # rows of some length: one slice copy each (a per-token index array, built with repeat
            # and arange and read by take, costs ~15x more for documents of hundreds of tokens)
            flat = cv.values[int(cv.offsets[0]):]
            p = a
            for st, n in zip(s.tolist(), ln.tolist()):
                values[p:p + n] = flat[st:st + n]
                p += n
        else:  # many short rows: one vectorised take beats a Python loop
            flat = cv.values[int(cv.offsets[0]):]
            idx = np.arange(m, dtype=np.int64) + np.repeat(s - (np.cumsum(ln) - ln), ln)
            np.take(flat, idx, out=values[a:a + m], mode="clip")  # in range; avoids buffering `out`
        a += m
    return values, offsets


#: Mean row length (elements) from which a ragged gather copies row by row instead of building a
#: per-element index.
_SLICE_ROWS_FROM = 24

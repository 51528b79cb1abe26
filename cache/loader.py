"""``StreamingDataLoader``: a DataLoader that knows how far the trainer got, for exact resume.

The dataset's copies in worker processes cannot see what the trainer consumed; this loader
counts the steps it hands out in the main process and turns that into the dataset's state.
It also measures how long the trainer waited for each step (the loader's share of a step).

Transfer chunks: handing one item from a worker to the main process has a fixed cost (shared
memory segment, file descriptor, queue, pickling) that dominates for a step of a few hundred
KB. With a batched :class:`~winnow.cache.dataset.StreamingDataset` and ``num_workers > 0`` a
worker therefore ships ``transfer_steps`` consecutive steps as one :class:`TransferChunk`
(columns concatenated along dim 0), and this loader's iterator splits it back into the steps
(views, no copy of the data) and hands them out one at a time, in the same global order.

Recycled buffers: a fresh shared-memory segment per item costs a page fault per 4 KB on both
sides, which is most of the transfer cost. Each worker therefore keeps a few segments and
reuses one once the main process is done with it: the loader shares a small flag array with
its workers (created before they start), a worker marks a slot busy when it ships it, and the
main process clears the flag when the last tensor viewing that chunk is garbage collected
(after the pin-memory copy, with ``pin_memory=True``). A worker that finds no free slot (a
trainer holding many steps) takes a fresh segment: slower, never blocked.

Mapped once: a recycled segment crosses to the main process as a descriptor (a file descriptor
passed over a socket) only the first time a worker ships it; the main process keeps that mapping
for the life of the workers, and every later item in the same segment carries just ``(worker
slot, generation, size)`` and its column layout, a few hundred bytes of pickle. Passing a
descriptor costs a connection to the worker's resource-sharer thread with an authentication
handshake on both sides (~0.7 ms of the main process's CPU and ~1 ms of the worker's per item on
this repo's 2-core machine, more than gathering eight 256-row steps), and mapping the segment
again costs a page fault per 4 KB. The tensors handed out view the kept mapping through a small
owner object; when the last of them is gone, the owner clears the slot's flag.

Page-locked in place: each kept mapping is a :class:`_Segment`, which
:class:`~winnow.cache.gpu.CudaPrefetcher` may page-lock once (``cudaHostRegister``) so that
host-to-device copies read the worker's segment directly, without the pin copy. The registration
is undone in the ``_Segment``'s finalizer, which runs before the mapping itself can go away: the
``_Segment`` holds the only reference to the whole-segment tensor, and every tensor viewing the
segment keeps the ``_Segment`` alive (through its slot owner). ``_forget`` and a slot's new
generation only drop the table's reference; a registered segment stays mapped and registered
until its last view is gone.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing
import os
import time
import weakref
from collections import deque
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info

from winnow.errors import CacheError, ConfigError

from winnow.cache.collate import step_to_torch

__all__ = ["StreamingDataLoader", "TransferChunk", "step_to_torch"]


_ALIGN = 64


def _torch_dtype(dtype: np.dtype) -> torch.dtype | None:
    try:
        return torch.from_numpy(np.empty(0, dtype=dtype)).dtype
    except TypeError:
        return None


def _shared_bytes(nbytes: int) -> torch.Tensor:
    """A uint8 tensor in a fresh shared-memory segment when in a DataLoader worker (the DataLoader
    then sends it without copying it again), else ordinary memory."""
    t = torch.empty(0, dtype=torch.uint8)
    if get_worker_info() is not None:
        try:
            return t.set_(torch.UntypedStorage._new_shared(max(nbytes, 1)), 0, (nbytes,))
        except (AttributeError, RuntimeError):  # private API moved: ordinary memory (one more copy)
            pass
    return torch.empty(nbytes, dtype=torch.uint8)


#: Recycled segments per worker (in flight at once: the DataLoader's prefetch plus what the
#: trainer holds; beyond that a worker takes fresh segments).
POOL_SLOTS = 8

_FLAGS: dict[int, Any] = {}  # loader iteration token -> its flag array (main process)
_SEGS: dict[int, dict[int, tuple[int, "_Segment"]]] = {}  # token -> flag index -> (generation, kept mapping)
_SENT: set[tuple[int, int, int]] = set()  # in a worker: (token, flag index, generation) already mapped by main
_TOKENS = itertools.count(1)
#: Main process: recycled-segment chunks received with their segment's descriptor ("mapped", a
#: segment's first trip) and by reference to a segment already mapped ("by_reference").
RECEIVED = {"mapped": 0, "by_reference": 0}


class _SlotPool:
    """A worker's recycled shared-memory segments (see the module docs)."""

    def __init__(self, token: int, flags: Any, worker: int, slots: int) -> None:
        self.token, self.flags, self.base, self.slots = token, flags, worker * slots, slots
        self.bufs: list[torch.Tensor | None] = [None] * slots
        self.gens = [0] * slots  # bumped when a slot's segment is replaced by a larger one

    def alloc(self, nbytes: int) -> tuple[torch.Tensor, tuple[int, int, int] | None]:
        flags = self.flags
        for j in range(self.slots):
            i = self.base + j
            if flags[i] == 0:
                buf = self.bufs[j]
                if buf is None or buf.numel() < nbytes:  # 1/8 headroom: a slightly larger next item keeps it
                    buf = self.bufs[j] = _shared_bytes(max(nbytes + nbytes // 8, 1 << 20))
                    self.gens[j] += 1
                flags[i] = 1  # the main process clears it when this chunk's tensors are gone
                return buf[:nbytes], (self.token, i, self.gens[j])
        return _shared_bytes(nbytes), None

    def give_back(self, slot: tuple[int, int, int] | None) -> None:
        """Free a slot whose chunk is not sent after all."""
        if slot is not None:
            self.flags[slot[1]] = 0


def _release(token: int, i: int) -> None:
    flags = _FLAGS.get(token)
    if flags is not None:
        flags[i] = 0


_EXIT = {"now": False}  # set at interpreter exit: finalizers then leave CUDA alone


@atexit.register
def _at_exit() -> None:
    _EXIT["now"] = True


class _Segment:
    """The main process's kept mapping of one recycled segment, ``(token, flag index, generation)``.

    Attributes:
        tensor: uint8 tensor over the whole segment (the only reference to its storage: when this
            object goes, the mapping goes).
        ptr, nbytes: where the segment lies in this process.
        registered: None until someone tried to page-lock it; then whether that worked.
        undo: called with ``ptr`` when this object is finalized, i.e. before the mapping can go
            away (set by whoever page-locked it: :class:`~winnow.cache.gpu.CudaPrefetcher`). Not
            called at interpreter exit (the process is going; so is its CUDA context) nor in a
            forked child (the registration belongs to the parent).
    """

    __slots__ = ("tensor", "key", "ptr", "nbytes", "registered", "undo", "pid")

    def __init__(self, tensor: torch.Tensor, key: tuple[int, int, int]) -> None:
        self.tensor, self.key = tensor, key
        self.ptr, self.nbytes = tensor.data_ptr(), tensor.untyped_storage().nbytes()
        self.registered: bool | None = None
        self.undo: Callable[[int], None] | None = None
        self.pid = os.getpid()

    def holds(self, t: torch.Tensor) -> bool:
        """Whether all of ``t``'s bytes lie in this segment."""
        p = t.data_ptr()
        return self.ptr <= p and p + t.numel() * t.element_size() <= self.ptr + self.nbytes

    def __del__(self, _exit: dict = _EXIT, _getpid: Callable[[], int] = os.getpid) -> None:
        undo, self.undo = self.undo, None
        if undo is not None and not _exit["now"] and _getpid() == self.pid:
            try:
                undo(self.ptr)
            except Exception:  # noqa: BLE001 - a finalizer must not raise; the mapping goes either way
                pass


def _forget(token: int) -> None:
    """Drop the main process's mappings of a loader's segments once its workers are gone (tensors
    still viewing one keep it mapped through their owner)."""
    _SEGS.pop(token, None)
    _FLAGS.pop(token, None)


class _SlotView:
    """Owner of the bytes a received chunk uses in a kept segment mapping: NumPy takes the memory
    from ``__array_interface__`` and keeps this object as the array's base; torch keeps the array.
    When the last tensor (or view, or NumPy array of one) is gone, this frees the worker's slot."""

    __slots__ = ("__array_interface__", "seg", "token", "index")

    def __init__(self, seg: _Segment, nbytes: int, token: int, index: int) -> None:
        self.seg, self.token, self.index = seg, token, index
        self.__array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "version": 3,
                                    "data": (seg.ptr, False)}

    def __del__(self, _release: Callable[[int, int], None] = _release) -> None:  # bound: safe at exit
        _release(self.token, self.index)


def _rebuild_chunk(rows: tuple[int, ...], buf: torch.Tensor | None, fields: list,
                   slot: tuple[int, ...] | None, nbytes: int = -1, tag: Any = None) -> "TransferChunk":
    c = _rebuild(rows, buf, fields, slot, nbytes)
    c.tag = tag
    return c


def _rebuild(rows: tuple[int, ...], buf: torch.Tensor | None, fields: list,
             slot: tuple[int, ...] | None, nbytes: int) -> "TransferChunk":
    if slot is not None and slot[0] in _FLAGS:  # in the main process of the loader that owns the slot
        token, i, gen = slot
        segs = _SEGS.setdefault(token, {})
        if buf is not None:  # the segment's first trip: keep its mapping
            segs[i] = (gen, _Segment(torch.empty(0, dtype=torch.uint8).set_(buf.untyped_storage()), (token, i, gen)))
            RECEIVED["mapped"] += 1
        else:
            RECEIVED["by_reference"] += 1
        e = segs.get(i)
        if e is None or e[0] != gen:
            raise CacheError(f"a DataLoader worker shipped transfer segment {i} (generation {gen}) that this process "
                             "never mapped; iterate a StreamingDataLoader's workers only through that loader")
        view = torch.from_numpy(np.asarray(_SlotView(e[1], nbytes, token, i)))
        return TransferChunk(rows, view, fields, slot, e[1])
    if buf is None:
        raise CacheError("a TransferChunk sent by reference (its segment already mapped) was received by a "
                         "process that never mapped it; only the StreamingDataLoader that started the worker can")
    return TransferChunk(rows, buf, fields)


class TransferChunk:
    """Consecutive steps of one worker, shipped to the main process as one DataLoader item.

    Everything of fixed element type travels in ONE shared-memory buffer (one segment and one
    file descriptor per item, whatever the number of columns); the rest is a few small Python
    objects pickled inline.

    Attributes:
        rows: the number of samples of each step (a tuple of ints, pickled inline: a tensor would
            cost a shared-memory segment and a descriptor transfer of its own).
        buf: uint8 tensor holding the arrays (each at a 64-byte aligned offset).
        fields: ``(name, kind, meta)`` in the steps' key order; ``kind`` is ``"cat"`` (the steps'
            arrays concatenated along dim 0: ``meta = (dtype, shape, offset)``), ``"ragged"`` (the
            steps' values concatenated and their offsets shifted into one int64 array of
            ``sum(rows) + 1``: ``meta = (dtype, count, values offset, offsets offset)``), ``"list"``
            (a Python list, concatenated) or ``"each"`` (a list with each step's own tensors, for
            a column whose shape or type differs between steps).
        segment: in the main process, the kept mapping of the recycled segment ``buf`` lies in
            (a :class:`_Segment`), else None.
        tag: a small picklable value travelling with the chunk (a
            :class:`~winnow.cache.packing.TokenPacker` batch: where its worker's next batch starts).
    """

    __slots__ = ("rows", "buf", "fields", "slot", "segment", "tag")

    def __init__(self, rows: tuple[int, ...], buf: torch.Tensor, fields: list[tuple[str, str, Any]],
                 slot: tuple[int, int, int] | None = None, segment: _Segment | None = None) -> None:
        self.rows = rows
        self.buf = buf
        self.fields = fields
        self.slot = slot  # (loader token, flag index, generation) of a recycled segment, else None
        self.segment = segment
        self.tag: Any = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        slot = self.slot
        if slot is None or get_worker_info() is None:
            return _rebuild_chunk, (self.rows, self.buf, self.fields, None, -1, self.tag)
        # A worker's recycled segment: its descriptor travels once (pickled in order on the one
        # result queue, so the main process has mapped it before any later item refers to it).
        if slot in _SENT:
            return _rebuild_chunk, (self.rows, None, self.fields, slot, self.buf.numel(), self.tag)
        _SENT.add(slot)
        return _rebuild_chunk, (self.rows, self.buf, self.fields, slot, self.buf.numel(), self.tag)

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def pack(cls, steps: Sequence[Mapping[str, Any]], pool: _SlotPool | None = None) -> "TransferChunk":
        """Concatenate gathered steps (as :meth:`MemoryTier.gather` returns them) into one chunk,
        in a recycled segment of ``pool`` when one is free."""
        if not steps:
            raise ValueError("TransferChunk.pack needs at least one step")
        first = steps[0]
        rows = tuple(_rows(s) for s in steps)
        total = sum(rows)
        plan: list[tuple[str, str, Any, list[Any]]] = []
        size = 0

        def room(nbytes: int) -> int:
            nonlocal size
            off = size
            size += -(-nbytes // _ALIGN) * _ALIGN
            return off

        for name, v0 in first.items():
            vs = [s.get(name) for s in steps]
            if (isinstance(v0, np.ndarray) and v0.ndim >= 1 and _torch_dtype(v0.dtype) is not None
                    and all(isinstance(v, np.ndarray) and v.shape[1:] == v0.shape[1:] and v.dtype == v0.dtype
                            for v in vs)):
                shape = (total, *v0.shape[1:])
                nbytes = int(np.prod(shape, dtype=np.int64)) * v0.dtype.itemsize
                plan.append((name, "cat", (v0.dtype, shape, room(nbytes)), vs))
            elif (isinstance(v0, tuple) and _torch_dtype(v0[0].dtype) is not None
                  and all(isinstance(v, tuple) and v[0].dtype == v0[0].dtype for v in vs)):
                count = sum(int(v[1][-1] - v[1][0]) for v in vs)
                meta = (v0[0].dtype, count, room(count * v0[0].dtype.itemsize), room((total + 1) * 8))
                plan.append((name, "ragged", meta, vs))
            elif isinstance(v0, list) and all(isinstance(v, list) for v in vs):
                plan.append((name, "list", [x for v in vs for x in v], vs))
            else:
                plan.append((name, "each", [step_to_torch({name: v}) for v in vs], vs))
        buf, slot = pool.alloc(size) if pool is not None else (_shared_bytes(size), None)
        raw = buf.numpy()
        fields: list[tuple[str, str, Any]] = []
        for name, kind, meta, vs in plan:
            if kind == "cat":
                dtype, shape, off = meta
                out = raw[off:off + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize].view(dtype).reshape(shape)
                a = 0
                for v in vs:
                    out[a:a + len(v)] = v
                    a += len(v)
                meta = (dtype.str, shape, off)
            elif kind == "ragged":
                dtype, count, voff, ooff = meta
                values = raw[voff:voff + count * dtype.itemsize].view(dtype)
                offsets = raw[ooff:ooff + (total + 1) * 8].view(np.int64)
                offsets[0] = 0
                a, base = 1, 0
                for vals, o in vs:
                    n = int(o[-1] - o[0])
                    values[base:base + n] = vals[int(o[0]):int(o[-1])]
                    offsets[a:a + len(o) - 1] = o[1:] - o[0] + base
                    base += n
                    a += len(o) - 1
                meta = (dtype.str, count, voff, ooff)
            fields.append((name, kind, meta))
        return cls(rows, buf, fields, slot)

    def layout(self) -> list[tuple[str, np.dtype, tuple[int, ...]]] | None:
        """``(name, dtype, row shape)`` per column when every column is fixed-shape ("cat"): the
        layout :meth:`open` needs to let the next chunk be gathered in place. Else None."""
        if not self.fields or any(kind != "cat" for _, kind, _ in self.fields):
            return None
        return [(name, np.dtype(meta[0]), tuple(meta[1][1:])) for name, _, meta in self.fields]

    @classmethod
    def open(cls, layout: Sequence[tuple[str, np.dtype, tuple[int, ...]]], steps: int, rows: int,
             pool: _SlotPool | None) -> tuple["TransferChunk", dict[str, np.ndarray]]:
        """An empty chunk of ``steps`` steps of ``rows`` rows in ``layout``, and NumPy views of its
        columns to gather into (saves :meth:`pack`'s copy of every step)."""
        total = steps * rows
        size, plan = 0, []
        for name, dtype, inner in layout:
            shape = (total, *inner)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            plan.append((name, dtype, shape, size, nbytes))
            size += -(-nbytes // _ALIGN) * _ALIGN
        buf, slot = pool.alloc(size) if pool is not None else (_shared_bytes(size), None)
        raw = buf.numpy()
        views = {name: raw[off:off + nbytes].view(dtype).reshape(shape) for name, dtype, shape, off, nbytes in plan}
        fields = [(name, "cat", (dtype.str, shape, off)) for name, dtype, shape, off, _ in plan]
        return cls((rows,) * steps, buf, fields, slot), views

    def _array(self, dtype: str, shape: tuple[int, ...], off: int) -> torch.Tensor:
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        return self.buf[off:off + nbytes].view(_torch_dtype(dt)).view(shape)

    def split(self) -> list[dict[str, Any]]:
        """The steps again, each as :func:`step_to_torch` would give it; tensors are views of the chunk."""
        rows = list(self.rows)
        bounds = [0]
        for r in rows:
            bounds.append(bounds[-1] + r)
        total = bounds[-1]
        out: list[dict[str, Any]] = [{} for _ in rows]
        for name, kind, meta in self.fields:
            if kind == "cat":
                for i, part in enumerate(self._array(*meta).split(rows)):
                    out[i][name] = part
            elif kind == "ragged":
                dtype, count, voff, ooff = meta
                values = self._array(dtype, (count,), voff)
                offsets = self._array("<i8", (total + 1,), ooff)
                edges = offsets[bounds].tolist()
                for i in range(len(rows)):
                    out[i][name] = values[edges[i]:edges[i + 1]]
                    o = offsets[bounds[i]:bounds[i + 1] + 1]
                    out[i][f"{name}_offsets"] = o - edges[i] if edges[i] else o
            elif kind == "list":
                for i in range(len(rows)):
                    out[i][name] = meta[bounds[i]:bounds[i + 1]]
            else:
                for i, d in enumerate(meta):
                    out[i].update(d)
        return out

    def pin_memory(self, *args: Any, **kwargs: Any) -> "TransferChunk":
        """Pinned copy (called by the DataLoader's pin-memory thread); the split steps stay pinned."""
        from torch.utils.data._utils.pin_memory import pin_memory as _pin

        fields = [(n, k, _pin(m) if k == "each" else m) for n, k, m in self.fields]
        out = TransferChunk(self.rows, self.buf.pin_memory(), fields)
        out.tag = self.tag
        return out

    def __repr__(self) -> str:
        return f"TransferChunk(steps={len(self.rows)}, samples={sum(self.rows)}, bytes={self.buf.numel()})"


def _rows(step: Mapping[str, Any]) -> int:
    for v in step.values():
        if isinstance(v, np.ndarray):
            return len(v)
        if isinstance(v, tuple):
            return len(v[1]) - 1
        if isinstance(v, list):
            return len(v)
    raise ValueError("a step without any column")


class _WorkerInit:
    """``worker_init_fn`` of a :class:`StreamingDataLoader` (chaining the user's function).

    Tells the worker's copy of the dataset that this loader splits :class:`TransferChunk` items,
    gives it its recycled transfer segments, and the shared iteration state: the epoch and resume
    point each new iteration starts from, which persistent workers cannot get from a fresh copy
    of the dataset.
    """

    def __init__(self, user: Callable[[int], Any] | None) -> None:
        self.user = user
        self.token = 0
        self.flags: Any = None  # set by the loader before its workers start
        self.state: Any = None

    def __call__(self, worker_id: int) -> None:
        wi = get_worker_info()
        if wi is not None:
            for ds in (wi.dataset, getattr(wi.dataset, "source", None)):  # a TokenPacker's source too
                if hasattr(ds, "_shared_state"):
                    ds._shared_state = self.state
        if wi is not None and hasattr(wi.dataset, "transfer_steps"):
            wi.dataset._transfer_ok = True
            if self.flags is not None:
                wi.dataset._slot_pool = _SlotPool(self.token, self.flags, worker_id, POOL_SLOTS)
        if self.user is not None:
            self.user(worker_id)


class StreamingDataLoader(DataLoader):
    """A ``torch.utils.data.DataLoader`` with ``state_dict()`` / ``load_state_dict()``.

    Args:
        dataset: a :class:`~winnow.cache.dataset.StreamingDataset` (or anything with
            ``batched``, ``batch_size``, ``state_dict(num_batches=)``, ``load_state_dict``).
        **kwargs: passed to ``DataLoader``. For a batched dataset ``batch_size`` is forced to
            ``None``; otherwise it defaults to the dataset's ``batch_size`` and must equal it.
            With a batched dataset and ``num_workers > 0``, workers ship ``transfer_steps``
            steps per item (see :class:`TransferChunk`); the iterator still yields single steps.

    Attributes:
        wait_s: seconds the consumer spent waiting inside ``next()`` during the last iteration.
    """

    def __init__(self, dataset: Any, **kwargs: Any) -> None:
        if getattr(dataset, "batched", False):
            if kwargs.get("batch_size") is not None:
                raise ConfigError("batch_size", kwargs["batch_size"], "None for a batched dataset",
                                  "the dataset already yields whole steps")
            kwargs["batch_size"] = None
        else:
            bs = kwargs.setdefault("batch_size", dataset.batch_size)
            if bs != dataset.batch_size:
                raise ConfigError("batch_size", bs, f"the dataset's batch_size={dataset.batch_size}",
                                  "ranks get equal step counts only if both agree")
        kwargs["worker_init_fn"] = _WorkerInit(kwargs.get("worker_init_fn"))
        super().__init__(dataset, **kwargs)
        self._yielded = 0
        self.wait_s = 0.0
        self._base: dict[str, Any] | None = None  # the dataset's state when the current iteration began
        self._pack_pos: dict[int, tuple[int, int]] = {}  # TokenPacker: worker -> where its next batch starts
        self._pack_last: int | None = None  # TokenPacker: the worker of the last batch handed out

    def __iter__(self) -> "_CountingIterator":
        self._yielded = 0
        self.wait_s = 0.0
        self._pack_pos, self._pack_last = {}, None
        packer = hasattr(self.dataset, "_pack_state")
        if packer:
            if (self.num_workers > 0 and self.persistent_workers and self._iterator is not None
                    and self.dataset._fresh_resume):
                raise CacheError("load_state_dict on a StreamingDataLoader over a TokenPacker with persistent_workers="
                                 "True must come before its first iteration (the running workers keep their copy)")
            self.dataset._begin(self.num_workers)
            self._base = None
        else:
            self._base = self._dataset_state(0)
        if self._direct():
            return _CountingIterator(self, self._direct_iter())
        init = self.worker_init_fn
        started = 0
        if isinstance(init, _WorkerInit) and self.num_workers > 0:
            if not (self.persistent_workers and self._iterator is not None):  # workers start now
                ctx = self.multiprocessing_context or multiprocessing.get_context()
                if isinstance(ctx, str):
                    ctx = multiprocessing.get_context(ctx)
                # Anonymous shared mappings, inherited by the workers: nothing to leak after a kill.
                init.token = next(_TOKENS)
                init.flags = ctx.RawArray("b", self.num_workers * POOL_SLOTS)
                init.state = ctx.RawArray("q", 6)
                _FLAGS[init.token] = init.flags
                started = init.token
                while len(_FLAGS) > 64:  # chunks of long-gone loaders then free nothing, harmlessly
                    _forget(next(iter(_FLAGS)))
            ds = getattr(self.dataset, "source", self.dataset) if packer else self.dataset
            resume = getattr(ds, "_resume", None)
            init.state[0] = int(getattr(ds, "epoch", 0))
            init.state[1] = int(resume is not None)
            if resume is not None:
                init.state[2], init.state[3], init.state[4] = resume["epoch"], resume["start"], resume["skip"]
            init.state[5] = int(getattr(ds, "start", 0))  # a MixedDataset's resume step
        inner = super().__iter__()
        if packer:
            self.dataset._fresh_resume = False
        if started:  # the workers' segments stay mapped here as long as their iterator lives
            weakref.finalize(inner, _forget, started)
        return _CountingIterator(self, inner)

    def _direct(self) -> bool:
        """In-process over a batched dataset with the default conversion: the dataset's steps
        are already tensors, so iterate it directly (the DataLoader's per-item machinery costs
        as much as a small step's gather)."""
        from torch.utils.data._utils.collate import default_convert

        return (self.num_workers == 0 and getattr(self.dataset, "batched", False)
                and self.collate_fn is default_convert and self.batch_size is None)

    def _direct_iter(self) -> Iterator[Any]:
        if not (self.pin_memory and torch.accelerator.is_available()):
            yield from self.dataset
            return
        from torch.utils.data._utils.pin_memory import pin_memory as _pin

        for step in self.dataset:
            yield _pin(step)

    def _dataset_state(self, n: int) -> dict[str, Any]:
        return self.dataset.state_dict(num_batches=n)

    def _mark(self) -> tuple[int, dict[int, tuple[int, int]] | None, int | None]:
        """What the state after the steps handed out so far needs (cheap; see :meth:`state_dict`)."""
        return self._yielded, (dict(self._pack_pos) if self._pack_last is not None else None), self._pack_last

    def state_dict(self, mark: tuple[int, Any, Any] | None = None) -> dict[str, Any]:
        """The dataset's state after the steps handed out by the current iteration.

        Args:
            mark: the state after an earlier point of this iteration instead, as :meth:`_mark`
                took it then (what :class:`~winnow.cache.gpu.CudaPrefetcher` hands out lags).
        """
        n, pos, last = self._mark() if mark is None else mark
        ds = self.dataset
        if hasattr(ds, "_pack_state"):
            return ds._pack_state(pos, last)
        b = self._base
        if b is None or getattr(ds, "epoch", b.get("epoch")) != b.get("epoch"):
            return ds.state_dict(num_batches=n if b is None else 0)
        if "partition" in b and hasattr(ds, "plan"):  # from the iteration's start: the dataset forgets a
            from winnow.cache.order import RankPlan  # resume point once the epoch's remainder was read

            p = ds.plan(b["epoch"])
            q = RankPlan(p.total, p.world, p.rank, p.batch_size, p.drop_last, p.partition,
                         int(b["start"]), int(b["skip"])).resumed(n)
            return {**b, "start": q.start, "skip": q.skip}
        if "step" in b:
            return {**b, "step": int(b["step"]) + n}
        return ds.state_dict(num_batches=n)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next iteration continues where ``state`` was taken."""
        self.dataset.load_state_dict(state)
        self._yielded = 0
        self._base = None
        self._pack_pos, self._pack_last = {}, None


def _spend_resume(ds: Any) -> None:
    """Forget ``ds``'s resume point once the epoch it was taken in has been delivered."""
    if getattr(ds, "_resume", None) is not None and ds._resume.get("epoch") == getattr(ds, "epoch", None):
        ds._resume = None


class _CountingIterator:
    """The DataLoader's iterator (workers start at once), counting and timing each ``next``.

    Attributes:
        segment: the kept recycled segment (:class:`_Segment`) the step last returned came from,
            else None (an in-process step, a fresh segment, a chunk the DataLoader's pin thread
            copied): what :class:`~winnow.cache.gpu.CudaPrefetcher` page-locks in place.
    """

    def __init__(self, loader: StreamingDataLoader, inner: Iterator[Any]) -> None:
        self._loader = loader
        self._inner = inner
        self._pending: deque[dict[str, Any]] = deque()
        self.segment: _Segment | None = None

    def __iter__(self) -> "_CountingIterator":
        return self

    def __next__(self) -> Any:
        if self._pending:
            self._loader._yielded += 1
            return self._pending.popleft()
        t0 = time.perf_counter()
        loader = self._loader
        try:
            batch = next(self._inner)
            if isinstance(batch, TransferChunk):
                self._pending.extend(batch.split())
                self.segment = batch.segment  # the pending steps all come from this chunk
                tag = batch.tag
                batch = self._pending.popleft()
            else:
                self.segment = None
                tag = getattr(loader.dataset, "_last_pos", None) if loader.num_workers == 0 else None
            if tag is not None:  # a TokenPacker batch: where its worker's next batch starts
                loader._pack_pos[tag[0]] = (tag[1], tag[2])
                loader._pack_last = tag[0]
        except StopIteration:
            ds = self._loader.dataset
            if hasattr(ds, "_pack_state"):  # a TokenPacker: its resume point is used up, and its source's
                ds._resume = None
                _spend_resume(ds.source)
            else:
                _spend_resume(ds)
            raise
        loader.wait_s += time.perf_counter() - t0
        loader._yielded += 1
        return batch

    def __getattr__(self, name: str) -> Any:  # e.g. _workers of the multiprocessing iterator
        return getattr(self._inner, name)

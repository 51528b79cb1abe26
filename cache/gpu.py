"""To the GPU: collation into pinned memory and a CUDA prefetcher on a side stream (copying
straight from the DataLoader workers' page-locked shared-memory segments where it can).

On a machine without CUDA (or with CPU-only torch) everything here falls back to plain
tensors on the CPU, so the same training loop runs in CI.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info
from torch.utils.data._utils.collate import default_collate

__all__ = ["cuda_ready", "pin", "pinned_collate", "to_device", "document_masks", "CudaPrefetcher"]


def cuda_ready() -> bool:
    """Whether CUDA can be used from this process."""
    return torch.cuda.is_available()


def pin(obj: Any) -> Any:
    """Page-lock every CPU tensor in a (nested) batch; a no-op without CUDA or in a worker."""
    if not cuda_ready() or get_worker_info() is not None:
        return obj
    return _map_tensors(obj, lambda t: t if t.is_pinned() or t.device.type != "cpu" else t.pin_memory())


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``obj`` with ``fn`` applied to each tensor of a (nested) batch: a tensor, a dict of
    batches, or a list/tuple of tensors; anything else as it is."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], torch.Tensor):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def pinned_collate(samples: Sequence[Any]) -> Any:
    """``default_collate`` that stacks equal-shape arrays straight into pinned buffers.

    In the main process with CUDA, each numeric field of the samples is copied once, into a
    page-locked tensor (no intermediate pageable copy); in DataLoader workers or without CUDA
    it is ``default_collate`` (use ``DataLoader(pin_memory=True)`` to pin workers' output).
    """
    if not samples or not isinstance(samples[0], dict) or not cuda_ready() or get_worker_info() is not None:
        return default_collate(samples)
    out: dict[str, Any] = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        v0 = vals[0]
        if isinstance(v0, np.ndarray) and all(isinstance(v, np.ndarray) and v.shape == v0.shape for v in vals):
            t = torch.empty((len(vals), *v0.shape), dtype=torch.from_numpy(v0[:0]).dtype, pin_memory=True)
            np.stack(vals, out=t.numpy())
            out[k] = t
        else:
            out[k] = default_collate(vals)
    return out


def to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    return _map_tensors(obj, lambda t: t.to(device, non_blocking=non_blocking))


def document_masks(doc_starts: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``doc_ids`` and ``position_ids`` of packed rows from their document boundaries, on the
    device ``doc_starts`` lives on (a few elementwise kernels and two scans on the GPU).

    Args:
        doc_starts: ``(rows, W)`` integer tensor, per row the in-row offsets where documents
            begin (0 first), padded with ``seq_len`` (as :class:`~winnow.cache.packing.TokenPacker`
            yields with ``boundaries=True``).
        seq_len: tokens per row.

    Returns:
        ``(doc_ids, position_ids)``, both ``(rows, seq_len)`` int32: the document's number within
        its row, and the offset inside its document (what variable-length attention takes; the
        block-diagonal mask is ``doc_ids[:, :, None] == doc_ids[:, None, :]``).
    """
    rows = doc_starts.shape[0]
    dev = doc_starts.device
    mark = torch.zeros((rows, seq_len + 1), dtype=torch.int32, device=dev)
    mark.scatter_(1, doc_starts.long(), 1)  # padding (seq_len) lands in the dropped last column
    mark = mark[:, :seq_len]
    doc = torch.cumsum(mark, dim=1, dtype=torch.int32) - 1
    idx = torch.arange(seq_len, dtype=torch.int32, device=dev).expand(rows, seq_len)
    last = torch.cummax(torch.where(mark > 0, idx, torch.zeros_like(idx)), dim=1).values
    return doc, (idx - last).to(torch.int32)


def _record(obj: Any, stream: Any) -> None:
    if isinstance(obj, torch.Tensor):
        obj.record_stream(stream)
    elif isinstance(obj, dict):
        for v in obj.values():
            _record(v, stream)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _record(v, stream)


def _clear_cuda_error() -> None:
    """Reset the CUDA runtime's last error after a failed call we handled (torch's next kernel
    launch check would raise it otherwise). Best effort: only through the libcudart torch loaded."""
    import ctypes

    major = (torch.version.cuda or "").split(".")[0]
    try:
        lib = ctypes.CDLL(f"libcudart.so.{major}", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        lib.cudaGetLastError()
    except (OSError, AttributeError):  # not loaded by that name (a static cudart): nothing to reach
        pass


def _unregister(cudart: Any, index: int, ptr: int) -> None:
    """Undo a ``cudaHostRegister`` (called by the segment's finalizer, from any thread)."""
    with torch.cuda.device(index):
        rc = cudart.cudaHostUnregister(ptr)
    if int(rc) != 0:
        _clear_cuda_error()


class _CudaOps:
    """The CUDA calls of :class:`CudaPrefetcher`'s copy path, in one place (tests substitute a
    stand-in with the same methods to check the bookkeeping on a machine without CUDA)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device=device)

    def thread_start(self) -> None:
        if self.device.index is not None:
            torch.cuda.set_device(self.device.index)

    def pin(self, t: torch.Tensor) -> torch.Tensor:
        return pin(t)

    def register(self, ptr: int, nbytes: int) -> Callable[[int], None] | None:
        """Page-lock ``nbytes`` at ``ptr`` in place; the undo function, or None if that failed."""
        cudart = torch.cuda.cudart()
        if not hasattr(cudart, "cudaHostUnregister"):  # an older torch: what is locked could not be unlocked
            return None
        rc = cudart.cudaHostRegister(ptr, nbytes, 0)
        if int(rc) != 0:
            _clear_cuda_error()
            return None
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        return functools.partial(_unregister, cudart, index)

    def copy(self, batch: Any) -> tuple[Any, Any]:
        """Issue the batch's host-to-device copies on the side stream; (device batch, event)."""
        with torch.cuda.stream(self.stream):
            gpu = to_device(batch, self.device, non_blocking=True)
            ev = torch.cuda.Event()
            ev.record(self.stream)
        return gpu, ev

    def hand_over(self, gpu: Any, ev: Any) -> None:
        """The compute stream waits for the copy; the caching allocator learns who uses ``gpu``."""
        cur = torch.cuda.current_stream(self.device)
        cur.wait_event(ev)
        _record(gpu, cur)

    def done(self, ev: Any) -> bool:
        return bool(ev.query())

    def sync(self) -> None:
        self.stream.synchronize()


def _host_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``obj`` with ``fn`` applied to each CPU tensor of a (nested) batch (as :func:`pin` walks it)."""
    return _map_tensors(obj, lambda t: fn(t) if t.device.type == "cpu" else t)


class CudaPrefetcher:
    """Iterate ``loader`` with host-to-device copies running ``depth`` batches ahead.

    Copies are issued on a side CUDA stream with ``non_blocking=True``; before a batch is handed
    out the compute stream waits on that copy's event, and the device tensors are recorded on the
    compute stream so the caching allocator does not reuse them early. Every host batch is kept
    until its copy's event has completed (checked at each ``next``, in order), and only then
    dropped. Without CUDA (or for a CPU ``device``) batches are moved synchronously.

    Where the host batch comes from:

    * ``register=True`` (default) over a :class:`~winnow.cache.loader.StreamingDataLoader` built
      with ``pin_memory=False`` and workers: each tensor that views one of the workers' recycled
      shared-memory segments is copied straight from it. The segment is page-locked in place
      once (``cudaHostRegister``), on its first batch, for as long as the main process keeps it
      mapped (the registration is undone before the mapping goes; see ``winnow.cache.loader``).
      Holding the host batch until its copy completed keeps the segment's slot busy, so the
      worker cannot overwrite bytes the copy still reads. A segment whose registration fails is
      not tried again; its batches take the pin copy (counted in ``stats``).
    * Everything else (``register=False``, a fresh segment when a worker had no free slot,
      in-process loading, any other loader, a DataLoader with ``pin_memory=True`` whose pin thread
      already copied): each CPU tensor is copied into page-locked memory first (:func:`pin`; a
      no-op for tensors already pinned), then to the device.

    Args:
        loader: any iterable of batches (dicts, tuples or tensors).
        device: target device (default ``cuda`` if available, else ``cpu``).
        depth: batches in flight.
        register: page-lock the StreamingDataLoader's recycled segments in place (see above);
            False: always the pin copy.
        ops: for tests only: a stand-in for the CUDA calls (see ``_CudaOps``), which turns on the
            copy path on any device.

    Attributes:
        stats: since construction, batches copied ``"direct"`` from registered segments, through
            the ``"pinned"`` copy, and ``"fallback"`` (pin copy because their segment's
            registration failed); segments ``"registered"`` and ``"register_failed"``.
    """

    def __init__(self, loader: Iterable[Any], device: str | torch.device | None = None, depth: int = 2,
                 register: bool = True, *, ops: Any = None) -> None:
        self.loader = loader
        self.device = torch.device(device if device is not None else ("cuda" if cuda_ready() else "cpu"))
        self.depth = max(1, int(depth))
        self.register = bool(register)
        self._ops = ops
        self.on_cuda = ops is not None or (self.device.type == "cuda" and cuda_ready())
        self.stats = {"direct": 0, "pinned": 0, "fallback": 0, "registered": 0, "register_failed": 0}
        self._handed: Any = None  # the loader's mark after the last batch handed to the trainer

    def state_dict(self) -> dict[str, Any]:
        """The loader's state after the batches this prefetcher handed to the trainer (the loader
        itself is up to ``depth`` batches further on): exact resume through the prefetcher."""
        if not hasattr(self.loader, "_mark"):
            raise TypeError(f"CudaPrefetcher.state_dict needs a StreamingDataLoader, not {type(self.loader).__name__}")
        if self._handed is None:
            return self.loader.state_dict()  # type: ignore[attr-defined]
        return self.loader.state_dict(self._handed)  # type: ignore[attr-defined]

    def load_state_dict(self, state: Any) -> None:
        """The loader's ``load_state_dict``."""
        self.loader.load_state_dict(state)  # type: ignore[attr-defined]
        self._handed = None

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def _host_batch(self, batch: Any, segment: Any, ops: Any) -> Any:
        """The batch as it is copied from: recycled-segment views as they are (the segment
        page-locked), every other CPU tensor through the pin copy."""
        st = self.stats
        if segment is not None and segment.registered is None:
            try:
                undo = ops.register(segment.ptr, segment.nbytes)
            except Exception:  # noqa: BLE001 - counted; the pin copy takes over for this segment
                undo = None
            segment.registered, segment.undo = undo is not None, undo
            st["registered" if undo is not None else "register_failed"] += 1
        seen = {"direct": False, "fallback": False}

        def route(t: torch.Tensor) -> torch.Tensor:
            if segment is not None and segment.holds(t):
                if segment.registered:
                    seen["direct"] = True
                    return t
                seen["fallback"] = True
            return ops.pin(t)

        out = _host_tensors(batch, route)
        st["fallback" if seen["fallback"] else "direct" if seen["direct"] else "pinned"] += 1
        return out

    def __iter__(self) -> Iterator[Any]:
        marks = hasattr(self.loader, "_mark")
        if not self.on_cuda:
            it0 = iter(self.loader)
            self._handed = (0, None, None) if marks else None
            for batch in it0:
                if marks:
                    self._handed = self.loader._mark()  # type: ignore[attr-defined]
                yield to_device(batch, self.device)
            return
        # A thread pulls batches, prepares their host side and issues their copies on a side
        # stream, up to `depth` ahead; the consumer's next() only takes a finished (device batch,
        # event, host batch). The thread is let go for the next batch only once the consumer has
        # done its own bookkeeping (a free slot is released right before the yield): waking it
        # earlier makes next() wait for the GIL while the thread runs the DataLoader's Python code.
        import queue
        import threading

        ops = self._ops if self._ops is not None else _CudaOps(self.device)
        ready: queue.SimpleQueue = queue.SimpleQueue()
        slots = threading.Semaphore(self.depth)
        stop = threading.Event()
        done = object()
        held: deque = deque()  # (event, host batch) whose copy may still read the host batch

        def feed() -> None:
            try:
                ops.thread_start()
                it = iter(self.loader)
                while True:
                    while not slots.acquire(timeout=0.1):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    try:
                        batch = next(it)
                    except StopIteration:
                        break
                    if self.register:
                        batch = self._host_batch(batch, getattr(it, "segment", None), ops)
                    else:
                        batch = _host_tensors(batch, ops.pin)
                        self.stats["pinned"] += 1
                    mark = self.loader._mark() if marks else None  # type: ignore[attr-defined]
                    gpu, ev = ops.copy(batch)
                    ready.put((gpu, ev, batch, mark))
                    del batch, gpu, ev  # only the consumer's bookkeeping decides when the host batch goes
                ready.put(done)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer thread, which re-raises it
                ready.put(e)

        self._handed = (0, None, None) if marks else None  # nothing handed out of this iteration yet
        th = threading.Thread(target=feed, name="winnow-cuda-prefetch", daemon=True)
        th.start()
        try:
            while True:
                item = ready.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                gpu, ev, host, mark = item
                ops.hand_over(gpu, ev)
                self._handed = mark
                held.append((ev, host))  # the copy may still be reading it: dropped once its event is done
                del item, host
                while held and ops.done(held[0][0]):  # one stream: events complete in order
                    held.popleft()
                slots.release()
                yield gpu
        finally:  # stop the thread (and with it the DataLoader's iterator and workers) now,
            stop.set()  # not at interpreter exit, where a daemon thread inside CUDA aborts
            slots.release()
            th.join(timeout=30)
            try:  # host batches go only once no copy can read them
                ops.sync()
            except Exception:  # noqa: BLE001 - CUDA already gone (interpreter exit): nothing reads them
                pass
            held.clear()
            while not ready.empty():
                ready.get_nowait()

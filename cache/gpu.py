"""To the GPU: collation into pinned memory and a CUDA prefetcher on a side stream.

On a machine without CUDA (or with CPU-only torch) everything here falls back to plain
tensors on the CPU, so the same training loop runs in CI.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

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
    if isinstance(obj, torch.Tensor):
        return obj if obj.is_pinned() or obj.device.type != "cpu" else obj.pin_memory()
    if isinstance(obj, dict):
        return {k: pin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], torch.Tensor):
        return type(obj)(pin(v) for v in obj)
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
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], torch.Tensor):
        return type(obj)(to_device(v, device, non_blocking) for v in obj)
    return obj


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


class CudaPrefetcher:
    """Iterate ``loader`` with host-to-device copies running ``depth`` batches ahead.

    Copies are issued on a side CUDA stream from pinned memory with ``non_blocking=True``;
    before a batch is handed out the compute stream waits on that copy's event, and the
    tensors are recorded on the compute stream so the caching allocator does not reuse them
    early. Without CUDA (or for a CPU ``device``) batches are moved synchronously.

    Args:
        loader: any iterable of batches (dicts, tuples or tensors).
        device: target device (default ``cuda`` if available, else ``cpu``).
        depth: batches in flight.
    """

    def __init__(self, loader: Iterable[Any], device: str | torch.device | None = None, depth: int = 2) -> None:
        self.loader = loader
        self.device = torch.device(device if device is not None else ("cuda" if cuda_ready() else "cpu"))
        self.depth = max(1, int(depth))
        self.on_cuda = self.device.type == "cuda" and cuda_ready()

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        if not self.on_cuda:
            for batch in self.loader:
                yield to_device(batch, self.device)
            return
        # A thread pulls batches, pins them and issues their copies on a side stream, up to
        # `depth` ahead; the consumer's next() only takes a finished (gpu batch, event) pair. The
        # thread is let go for the next batch only once the consumer has done its own bookkeeping
        # (a free slot is released right before the yield): waking it earlier makes next() wait
        # for the GIL while the thread runs the DataLoader's Python code.
        import queue
        import threading

        stream = torch.cuda.Stream(device=self.device)
        ready: queue.SimpleQueue = queue.SimpleQueue()
        slots = threading.Semaphore(self.depth)
        stop = threading.Event()
        done = object()

        def feed() -> None:
            try:
                if self.device.index is not None:
                    torch.cuda.set_device(self.device.index)
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
                    batch = pin(batch)
                    with torch.cuda.stream(stream):
                        gpu = to_device(batch, self.device, non_blocking=True)
                        ev = torch.cuda.Event()
                        ev.record(stream)
                    ready.put((gpu, ev, batch))
                ready.put(done)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer thread, which re-raises it
                ready.put(e)

        th = threading.Thread(target=feed, name="winnow-cuda-prefetch", daemon=True)
        th.start()
        try:
            while True:
                item = ready.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                gpu, ev, _host = item  # the pinned host batch lives until its copy is waited on
                cur = torch.cuda.current_stream(self.device)
                cur.wait_event(ev)
                _record(gpu, cur)
                del item, _host
                slots.release()
                yield gpu
        finally:  # stop the thread (and with it the DataLoader's iterator and workers) now,
            stop.set()  # not at interpreter exit, where a daemon thread inside CUDA aborts
            slots.release()
            th.join(timeout=30)

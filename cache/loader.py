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
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info

from winnow.errors import ConfigError

__all__ = ["StreamingDataLoader", "TransferChunk", "step_to_torch"]


def step_to_torch(out: Mapping[str, Any]) -> dict[str, Any]:
    """One gathered step (NumPy arrays, ``(values, offsets)`` tuples, lists) as a dict of tensors.

    A ragged column ``c`` becomes ``c`` (flat values) and ``c_offsets`` (``rows + 1`` int64).
    """
    res: dict[str, Any] = {}
    for k, v in out.items():
        if isinstance(v, np.ndarray):
            res[k] = torch.from_numpy(v)
        elif isinstance(v, tuple):
            res[k] = torch.from_numpy(v[0])
            res[f"{k}_offsets"] = torch.from_numpy(v[1])
        else:
            res[k] = v
    return res


def _shared_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A NumPy array backed by a fresh shared-memory tensor: the DataLoader then sends it without a copy."""
    t = torch.empty(0, dtype=torch.from_numpy(np.empty(0, dtype=dtype)).dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if get_worker_info() is not None:
        try:
            t = t.set_(torch.UntypedStorage._new_shared(max(n, 1) * t.element_size()), 0, shape)
            return t.numpy()
        except (AttributeError, RuntimeError):  # private API moved: an ordinary buffer (one more copy)
            pass
    return np.empty(shape, dtype=dtype)


def _concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    out = _shared_empty((sum(len(a) for a in arrays), *arrays[0].shape[1:]), arrays[0].dtype)
    a = 0
    for x in arrays:
        out[a:a + len(x)] = x
        a += len(x)
    return out


class TransferChunk:
    """Consecutive steps of one worker, shipped to the main process as one DataLoader item.

    Attributes:
        rows: int64 tensor, the number of samples of each step (``len(rows)`` steps).
        fields: ``(name, kind, data)`` in the steps' key order; ``kind`` is ``"cat"`` (a tensor,
            the steps concatenated along dim 0), ``"ragged"`` (``(values, offsets)`` tensors: the
            steps' values concatenated, offsets shifted into one array of ``sum(rows) + 1``),
            ``"list"`` (a Python list, concatenated) or ``"each"`` (a list with each step's own
            value, for a column whose shape differs between steps).
    """

    __slots__ = ("rows", "fields")

    def __init__(self, rows: torch.Tensor, fields: list[tuple[str, str, Any]]) -> None:
        self.rows = rows
        self.fields = fields

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def pack(cls, steps: Sequence[Mapping[str, Any]]) -> "TransferChunk":
        """Concatenate gathered steps (as :meth:`MemoryTier.gather` returns them) into one chunk."""
        if not steps:
            raise ValueError("TransferChunk.pack needs at least one step")
        first = steps[0]
        rows = np.asarray([_rows(s) for s in steps], dtype=np.int64)
        fields: list[tuple[str, str, Any]] = []
        for name, v0 in first.items():
            vs = [s.get(name) for s in steps]
            if isinstance(v0, np.ndarray) and all(
                    isinstance(v, np.ndarray) and v.shape[1:] == v0.shape[1:] and v.dtype == v0.dtype and v.ndim >= 1
                    for v in vs):
                fields.append((name, "cat", torch.from_numpy(_concat(vs))))
            elif isinstance(v0, tuple) and all(isinstance(v, tuple) and v[0].dtype == v0[0].dtype for v in vs):
                values = _concat([v[0][int(v[1][0]):int(v[1][-1])] for v in vs])
                offsets = np.empty(int(rows.sum()) + 1, dtype=np.int64)
                offsets[0] = 0
                a, base = 1, 0
                for v in vs:
                    o = v[1]
                    offsets[a:a + len(o) - 1] = o[1:] - o[0] + base
                    base += int(o[-1] - o[0])
                    a += len(o) - 1
                fields.append((name, "ragged", (torch.from_numpy(values), torch.from_numpy(offsets))))
            elif isinstance(v0, list) and all(isinstance(v, list) for v in vs):
                fields.append((name, "list", [x for v in vs for x in v]))
            else:
                fields.append((name, "each", [step_to_torch({name: v}) for v in vs]))
        return cls(torch.from_numpy(rows), fields)

    def split(self) -> list[dict[str, Any]]:
        """The steps again, each as :func:`step_to_torch` would give it; tensors are views of the chunk."""
        rows = self.rows.tolist()
        bounds = [0]
        for r in rows:
            bounds.append(bounds[-1] + r)
        out: list[dict[str, Any]] = [{} for _ in rows]
        for name, kind, data in self.fields:
            if kind == "cat":
                for i, part in enumerate(data.split(rows)):
                    out[i][name] = part
            elif kind == "ragged":
                values, offsets = data
                edges = offsets[bounds].tolist()
                for i in range(len(rows)):
                    a, b = bounds[i], bounds[i + 1]
                    out[i][name] = values[edges[i]:edges[i + 1]]
                    o = offsets[a:b + 1]
                    out[i][f"{name}_offsets"] = o - edges[i] if edges[i] else o
            elif kind == "list":
                for i in range(len(rows)):
                    out[i][name] = data[bounds[i]:bounds[i + 1]]
            else:
                for i, d in enumerate(data):
                    out[i].update(d)
        return out

    def pin_memory(self, *args: Any, **kwargs: Any) -> "TransferChunk":
        """Pinned copy (called by the DataLoader's pin-memory thread); the split steps stay pinned."""
        from torch.utils.data._utils.pin_memory import pin_memory as _pin

        fields = [(n, k, _pin(d)) for n, k, d in self.fields]
        return TransferChunk(self.rows, fields)

    def __repr__(self) -> str:
        return f"TransferChunk(steps={len(self.rows)}, samples={int(self.rows.sum())})"


def _rows(step: Mapping[str, Any]) -> int:
    for v in step.values():
        if isinstance(v, np.ndarray):
            return len(v)
        if isinstance(v, tuple):
            return len(v[1]) - 1
        if isinstance(v, list):
            return len(v)
    raise ValueError("a step without any column")


class _TransferInit:
    """``worker_init_fn`` of a :class:`StreamingDataLoader`: tells the worker's copy of the dataset
    that this loader splits :class:`TransferChunk` items (then chains the user's function)."""

    def __init__(self, user: Callable[[int], Any] | None) -> None:
        self.user = user

    def __call__(self, worker_id: int) -> None:
        wi = get_worker_info()
        if wi is not None and hasattr(wi.dataset, "transfer_steps"):
            wi.dataset._transfer_ok = True
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
            kwargs["worker_init_fn"] = _TransferInit(kwargs.get("worker_init_fn"))
        else:
            bs = kwargs.setdefault("batch_size", dataset.batch_size)
            if bs != dataset.batch_size:
                raise ConfigError("batch_size", bs, f"the dataset's batch_size={dataset.batch_size}",
                                  "ranks get equal step counts only if both agree")
        super().__init__(dataset, **kwargs)
        self._yielded = 0
        self.wait_s = 0.0

    def __iter__(self) -> "_CountingIterator":
        self._yielded = 0
        self.wait_s = 0.0
        return _CountingIterator(self, super().__iter__())

    def state_dict(self) -> dict[str, Any]:
        """The dataset's state after the steps handed out by the current iteration."""
        return self.dataset.state_dict(num_batches=self._yielded)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next iteration continues where ``state`` was taken."""
        self.dataset.load_state_dict(state)
        self._yielded = 0


class _CountingIterator:
    """The DataLoader's iterator (workers start at once), counting and timing each ``next``."""

    def __init__(self, loader: StreamingDataLoader, inner: Iterator[Any]) -> None:
        self._loader = loader
        self._inner = inner
        self._pending: deque[dict[str, Any]] = deque()

    def __iter__(self) -> "_CountingIterator":
        return self

    def __next__(self) -> Any:
        if self._pending:
            self._loader._yielded += 1
            return self._pending.popleft()
        t0 = time.perf_counter()
        try:
            batch = next(self._inner)
            if isinstance(batch, TransferChunk):
                self._pending.extend(batch.split())
                batch = self._pending.popleft()
        except StopIteration:
            ds = self._loader.dataset
            if getattr(ds, "_resume", None) is not None and ds._resume.get("epoch") == ds.epoch:
                ds._resume = None  # that epoch's remainder has been delivered
            raise
        self._loader.wait_s += time.perf_counter() - t0
        self._loader._yielded += 1
        return batch

    def __getattr__(self, name: str) -> Any:  # e.g. _workers of the multiprocessing iterator
        return getattr(self._inner, name)

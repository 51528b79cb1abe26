"""``StreamingDataLoader``: a DataLoader that knows how far the trainer got, for exact resume.

The dataset's copies in worker processes cannot see what the trainer consumed; this loader
counts the steps it hands out in the main process and turns that into the dataset's state.
It also measures how long the trainer waited for each step (the loader's share of a step).
"""

from __future__ import annotations

import time
from typing import Any, Iterator, Mapping

from torch.utils.data import DataLoader

from winnow.errors import ConfigError

__all__ = ["StreamingDataLoader"]


class StreamingDataLoader(DataLoader):
    """A ``torch.utils.data.DataLoader`` with ``state_dict()`` / ``load_state_dict()``.

    Args:
        dataset: a :class:`~winnow.cache.dataset.StreamingDataset` (or anything with
            ``batched``, ``batch_size``, ``state_dict(num_batches=)``, ``load_state_dict``).
        **kwargs: passed to ``DataLoader``. For a batched dataset ``batch_size`` is forced to
            ``None``; otherwise it defaults to the dataset's ``batch_size`` and must equal it.

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

    def __iter__(self) -> "_CountingIterator":
        return self

    def __next__(self) -> Any:
        t0 = time.perf_counter()
        try:
            batch = next(self._inner)
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

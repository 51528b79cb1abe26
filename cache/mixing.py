"""Mixing several datasets by weight, with weights that may follow a schedule over steps.

:class:`MixedDataset` draws, for each training step ``s``, which source supplies that step's
batch: source ``k`` with probability ``weights(s)[k]``. The draw is a pure function of
``(seed, s)`` and the schedule, so the mixture is the same for any number of workers, and a
source's own step counter (how many of the earlier steps it supplied) follows from the draws
alone: resuming at step ``s`` needs nothing but ``s``. Sources loop over their epochs
(``epoch = count // steps_per_epoch``) and keep their own shuffle.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from winnow.curriculum import DRAW_CHUNK, weighted_draws
from winnow.errors import ConfigError

from winnow.cache.dataset import StreamingDataset
from winnow.cache.loader import step_to_torch

__all__ = ["WeightSchedule", "MixedDataset", "SOURCE_KEY"]

#: Key of the source number in every mixed batch.
SOURCE_KEY = "_source"
_CHUNK = DRAW_CHUNK


class WeightSchedule:
    """Mixture weights as a function of the step (a curriculum).

    Args:
        points: ``[(step, [w0, w1, ...]), ...]`` with increasing steps; before the first point
            its weights hold, after the last point the last weights hold.
        mode: ``"linear"`` interpolates between points, ``"step"`` holds each point's weights
            until the next point.
    """

    def __init__(self, points: Sequence[tuple[int, Sequence[float]]], mode: str = "linear") -> None:
        if not points:
            raise ConfigError("schedule", points, "at least one (step, weights) point")
        steps = np.asarray([p[0] for p in points], dtype=np.float64)
        w = np.asarray([list(p[1]) for p in points], dtype=np.float64)
        if w.ndim != 2 or (w < 0).any() or (w.sum(axis=1) <= 0).any():
            raise ConfigError("schedule", points, "non-negative weights with a positive sum at every point")
        if (np.diff(steps) <= 0).any():
            raise ConfigError("schedule", [p[0] for p in points], "strictly increasing steps")
        if mode not in ("linear", "step"):
            raise ConfigError("mode", mode, "'linear' or 'step'")
        self.steps, self.weights, self.mode = steps, w / w.sum(axis=1, keepdims=True), mode

    @property
    def sources(self) -> int:
        return self.weights.shape[1]

    def __call__(self, steps: np.ndarray) -> np.ndarray:
        """Normalised weights, shape ``(len(steps), sources)``."""
        s = np.asarray(steps, dtype=np.float64)
        if self.mode == "step":
            i = np.clip(np.searchsorted(self.steps, s, side="right") - 1, 0, len(self.steps) - 1)
            return self.weights[i]
        cols = [np.interp(s, self.steps, self.weights[:, k]) for k in range(self.sources)]
        w = np.stack(cols, axis=1)
        return w / w.sum(axis=1, keepdims=True)


class MixedDataset(IterableDataset):
    """Batches from several batched :class:`StreamingDataset` sources, mixed by weight.

    Args:
        datasets: sources, all ``batched=True`` with the same ``batch_size``, rank and world size.
        weights: constant weights (one per source), or
        schedule: a :class:`WeightSchedule` or any ``f(steps) -> (len(steps), k)`` array.
        steps: steps one iteration yields (default: the sources' steps per epoch, summed).
        seed: seed of the per-step draws.
    """

    def __init__(self, datasets: Sequence[StreamingDataset], *, weights: Sequence[float] | None = None,
                 schedule: WeightSchedule | Callable[[np.ndarray], np.ndarray] | None = None,
                 steps: int | None = None, seed: int = 0) -> None:
        super().__init__()
        if not datasets:
            raise ConfigError("datasets", datasets, "at least one dataset")
        if (weights is None) == (schedule is None):
            raise ConfigError("weights/schedule", (weights, schedule), "exactly one of the two")
        bs = {d.batch_size for d in datasets}
        if len(bs) != 1 or not all(d.batched for d in datasets):
            raise ConfigError("datasets", [(d.batched, d.batch_size) for d in datasets],
                              "batched=True sources with one batch_size")
        if len({(d.rank, d.world_size) for d in datasets}) != 1:
            raise ConfigError("datasets", [(d.rank, d.world_size) for d in datasets], "one rank and world size")
        self.datasets = list(datasets)
        self.schedule = schedule if schedule is not None else WeightSchedule([(0, list(weights or []))])
        if isinstance(self.schedule, WeightSchedule) and self.schedule.sources != len(self.datasets):
            raise ConfigError("weights", weights, f"{len(self.datasets)} weights, one per dataset")
        self.batch_size = datasets[0].batch_size
        self.batched = True
        self.seed = int(seed)
        self.per_epoch = [d.plan(0).steps for d in self.datasets]
        self.steps = int(steps) if steps is not None else sum(self.per_epoch)
        self.start = 0
        self._shared_state: Any = None  # a StreamingDataLoader worker's view of the loader's state

    def choices(self, start: int, stop: int) -> np.ndarray:
        """Source of each step in ``[start, stop)`` (a pure function of seed, step, schedule)."""
        return weighted_draws((self.seed,), self.schedule, start, stop)

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_shared_state"] = None
        return state

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._shared_state is not None:  # persistent workers: the loader says where to start
            self.start = int(self._shared_state[5])
        wi = get_worker_info()
        wid, nw = (wi.id, wi.num_workers) if wi is not None else (0, 1)
        counts = np.zeros(len(self.datasets), dtype=np.int64)
        if self.start:
            counts += np.bincount(self.choices(0, self.start), minlength=len(self.datasets))
        pos = self.start
        while pos < self.steps:
            end = min(pos + _CHUNK, self.steps)
            ks = self.choices(pos, end)
            for i, k in enumerate(ks.tolist()):
                s = pos + i
                j = int(counts[k])
                counts[k] += 1
                if (s - self.start) % nw != wid:
                    continue
                d = self.datasets[k]
                out = step_to_torch(d.step(j % self.per_epoch[k], epoch=d.epoch + j // self.per_epoch[k]))
                out[SOURCE_KEY] = k
                yield out
            pos = end

    def state_dict(self, num_batches: int = 0) -> dict[str, Any]:
        """The step to resume at after ``num_batches`` more steps were consumed."""
        return {"version": 1, "step": self.start + int(num_batches), "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("seed") != self.seed:
            raise ConfigError("state.seed", state.get("seed"), f"this MixedDataset's seed {self.seed}")
        self.start = int(state["step"])

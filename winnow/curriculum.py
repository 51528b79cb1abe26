"""A curriculum from the shards' own scores: difficulty buckets and a schedule over steps.

:func:`plan_curriculum` reads one numeric column of a run's shards (the model_quality
perplexity, a quality score, token counts ...), cuts it into difficulty buckets at quantiles
computed from those values, and returns a :class:`CurriculumPlan`: the bucket of every sample
(global sample index = position in the manifest's shard order), the cut points, and a
:class:`Schedule` of bucket weights over training steps. The plan is JSON
(:meth:`CurriculumPlan.to_json`), written next to the manifest for the loader to read.

:meth:`CurriculumPlan.batches` is the sample order: step ``s`` takes a whole batch from the
bucket drawn from ``(seed, s)`` with the schedule's weights at ``s``; within a bucket samples
are visited in a per-pass permutation, each exactly once per pass. Everything is a pure
function of ``(seed, plan, step)``, so resuming at any step needs only the step, and every
worker can compute its own slice. No torch here: the loader (``winnow.cache``) wraps it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from winnow.errors import ConfigError

__all__ = ["Schedule", "CurriculumPlan", "plan_curriculum", "simple_to_complex", "bucket_edges", "column_values"]


class Schedule:
    """Bucket weights over steps: ``[(step, [w_bucket0, w_bucket1, ...]), ...]``.

    Each point's weights hold from its step until the next point (before the first point, the
    first point's weights hold).
    """

    def __init__(self, points: Sequence[tuple[int, Sequence[float]]]) -> None:
        if not points:
            raise ConfigError("curriculum.schedule", points, "at least one (step, weights) point")
        steps = np.asarray([int(p[0]) for p in points], dtype=np.int64)
        w = np.asarray([list(p[1]) for p in points], dtype=np.float64)
        if w.ndim != 2 or (w < 0).any() or (w.sum(axis=1) <= 0).any():
            raise ConfigError("curriculum.schedule", points, "non-negative weights with a positive sum at every point")
        if (np.diff(steps) <= 0).any():
            raise ConfigError("curriculum.schedule", steps.tolist(), "strictly increasing steps")
        self.steps = steps
        self.weights = w / w.sum(axis=1, keepdims=True)

    @property
    def buckets(self) -> int:
        return int(self.weights.shape[1])

    def __call__(self, steps: np.ndarray) -> np.ndarray:
        """Weights, shape ``(len(steps), buckets)``."""
        i = np.searchsorted(self.steps, np.asarray(steps, dtype=np.int64), side="right") - 1
        return self.weights[np.clip(i, 0, len(self.steps) - 1)]

    def to_json(self) -> list:
        return [[int(s), [float(x) for x in w]] for s, w in zip(self.steps, self.weights)]


def simple_to_complex(total_steps: int) -> Schedule:
    """The spec's schedule over two buckets: simple only, then 70% simple + 30% complex, then
    complex only, each a third of ``total_steps``."""
    if total_steps < 3:
        raise ConfigError("curriculum.total_steps", total_steps, "at least 3 steps")
    third = total_steps // 3
    return Schedule([(0, [1.0, 0.0]), (third, [0.7, 0.3]), (2 * third, [0.0, 1.0])])


def bucket_edges(values: np.ndarray, buckets: int) -> np.ndarray:
    """The ``buckets - 1`` inner cut points at quantiles of the finite ``values``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ConfigError("curriculum.column", "(no finite values)", "a numeric column with values")
    return np.quantile(v, np.arange(1, buckets) / buckets)


@dataclass(frozen=True)
class CurriculumPlan:
    """Which bucket each sample is in, and the schedule.

    Attributes:
        column: the score column.
        edges: the inner cut points (bucket ``b`` holds values in ``[edges[b-1], edges[b])``;
            missing values go to the last, hardest bucket).
        bucket_of: bucket number per global sample index.
        schedule: bucket weights over steps.
        batch_size: samples per step.
        seed: the seed of the step draws and the per-pass permutations.
    """

    column: str
    edges: np.ndarray
    bucket_of: np.ndarray
    schedule: Schedule
    batch_size: int
    seed: int = 0

    def members(self, bucket: int) -> np.ndarray:
        return np.flatnonzero(self.bucket_of == bucket)

    def bucket_per_step(self, start: int, stop: int) -> np.ndarray:
        """The bucket drawn for each step in ``[start, stop)`` (a pure function of seed and step)."""
        steps = np.arange(start, stop, dtype=np.int64)
        w = self.schedule(steps)
        u = np.array([np.random.default_rng([self.seed, int(s), 0x6375]).random() for s in steps])
        return (u[:, None] >= np.cumsum(w, axis=1)).sum(axis=1).clip(0, w.shape[1] - 1)

    def batches(self, start: int, stop: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(step, bucket, global sample indices)`` for steps ``[start, stop)``."""
        drawn = self.bucket_per_step(0, stop)
        members = [self.members(b) for b in range(self.schedule.buckets)]
        used = np.zeros(len(members), dtype=np.int64)
        for b in range(len(members)):
            used[b] = int((drawn[:start] == b).sum())
        for s in range(start, stop):
            b = int(drawn[s])
            m = members[b]
            if m.size == 0:
                raise ConfigError("curriculum.schedule", f"bucket {b} at step {s}", "a bucket with samples")
            per_pass = max(1, m.size // self.batch_size)
            p, k = divmod(int(used[b]), per_pass)
            perm = np.random.default_rng([self.seed, b, p, 0x7065]).permutation(m.size)
            yield s, b, m[perm[k * self.batch_size:(k + 1) * self.batch_size]]
            used[b] += 1

    def to_json(self) -> str:
        return json.dumps({"column": self.column, "edges": [float(e) for e in self.edges],
                           "bucket_of": self.bucket_of.astype(int).tolist(), "schedule": self.schedule.to_json(),
                           "batch_size": self.batch_size, "seed": self.seed})

    @classmethod
    def from_json(cls, text: str) -> CurriculumPlan:
        d = json.loads(text)
        return cls(d["column"], np.asarray(d["edges"]), np.asarray(d["bucket_of"], dtype=np.int32),
                   Schedule(d["schedule"]), int(d["batch_size"]), int(d["seed"]))


def plan_curriculum(values: np.ndarray, column: str, schedule: Schedule, batch_size: int, seed: int = 0,
                    ascending: bool = True) -> CurriculumPlan:
    """Buckets by quantiles of ``values`` (low is simple when ``ascending``) and the schedule.

    ``values`` is the column in global sample order; :func:`column_values` reads it from a run.
    """
    v = np.asarray(values, dtype=np.float64)
    if not ascending:
        v = -v
    edges = bucket_edges(v, schedule.buckets)
    bucket = np.searchsorted(edges, v, side="right").astype(np.int32)
    bucket[~np.isfinite(v)] = schedule.buckets - 1
    return CurriculumPlan(column, edges if ascending else -edges, bucket, schedule, batch_size, seed)


def column_values(run_dir: str, column: str) -> np.ndarray:
    """One numeric column of a run's shards, in global sample order (the manifest's shard order).

    Raises:
        ConfigError: the column is missing or not numeric.
    """
    import fsspec
    import pyarrow as pa

    from winnow.format import Manifest
    from winnow.shardio import join_uri

    with fsspec.open(join_uri(run_dir, "index.json"), "rb") as fh:
        m = Manifest.loads(fh.read())
    parts = []
    for s in m.shards:
        with fsspec.open(join_uri(run_dir, s.path), "rb") as fh:
            t = pa.ipc.open_file(pa.BufferReader(fh.read())).read_all()
        if column not in t.column_names:
            raise ConfigError("curriculum.column", column, f"a column of the shards ({', '.join(t.column_names)})")
        col = t.column(column)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise ConfigError("curriculum.column", column, f"a numeric column (it is {col.type})")
        parts.append(col.to_numpy(zero_copy_only=False).astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros(0)

"""A curriculum from the shards' own scores: difficulty buckets and a schedule over steps.

:func:`plan_curriculum` reads one numeric column of a run's shards (the model_quality
perplexity, a quality score, token counts ...), cuts it into difficulty buckets at quantiles
computed from those values, and returns a :class:`CurriculumPlan`: the bucket of every sample
(global sample index = position in the manifest's shard order), the cut points, and a
:class:`Schedule` of bucket weights over training steps. The plan is JSON
(:meth:`CurriculumPlan.to_json`), written next to the manifest for the loader to read.

:meth:`CurriculumPlan.locate` is the schedule: step ``s`` takes a whole batch from the bucket
drawn from ``(seed, s)`` with the schedule's weights at ``s`` (the draw of
:func:`weighted_draws`, shared with the loader's weighted mixing); the ``n``-th step that draws
a bucket takes the ``n``-th batch of passes over that bucket, each sample exactly once per pass.
Everything is a pure function of ``(seed, plan, step)``, so resuming at any step needs only the
step, and every worker can compute its own slice. :meth:`CurriculumPlan.batches` visits each
pass in a seeded permutation of the bucket; ``winnow.cache.StreamingDataset(curriculum=...)``
keeps the same buckets, passes and offsets but visits a pass in the epoch order's shuffle blocks
(a few shards at a time). No torch here.

:func:`write_curriculum` (or ``python -m winnow.curriculum RUN --column C --steps N``) writes
``curriculum.json`` beside a run's ``index.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import xxhash

from winnow.errors import ConfigError, WinnowError

__all__ = ["Schedule", "CurriculumPlan", "plan_curriculum", "simple_to_complex", "bucket_edges", "column_values",
           "weighted_draws", "write_curriculum", "CURRICULUM_FILE", "DRAW_CHUNK"]


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


#: Steps drawn with one generator (the draws of a step depend only on the seed and its chunk).
DRAW_CHUNK = 8192
_DRAW_SALT = 0x6375
_PERM_SALT = 0x7065


def weighted_draws(key: Sequence[int], weights: Callable[[np.ndarray], np.ndarray], start: int,
                   stop: int) -> np.ndarray:
    """For each step in ``[start, stop)``, an index ``k`` drawn with probability ``weights(steps)[:, k]``.

    Steps are drawn in chunks of :data:`DRAW_CHUNK`: chunk ``c`` uses one generator seeded by
    ``(*key, c)``, so a step's draw is a pure function of ``key``, the step and the weights, and
    any range costs only the chunks it touches. This is the draw of
    :class:`winnow.cache.MixedDataset` (``key = (seed,)``); curricula use it with their own key.
    """
    out = np.empty(max(stop - start, 0), dtype=np.int64)
    c0, c1 = start // DRAW_CHUNK, (stop + DRAW_CHUNK - 1) // DRAW_CHUNK
    for c in range(c0, c1):
        lo, hi = c * DRAW_CHUNK, (c + 1) * DRAW_CHUNK
        u = np.random.Generator(np.random.PCG64(np.random.SeedSequence([*map(int, key), c]))).random(DRAW_CHUNK)
        cum = np.cumsum(np.asarray(weights(np.arange(lo, hi))), axis=1)
        k = (u[:, None] >= cum[:, :-1]).sum(axis=1)
        a, b = max(lo, start), min(hi, stop)
        if a < b:
            out[a - start:b - start] = k[a - lo:b - lo]
    return out


@dataclass(frozen=True, eq=False)
class CurriculumPlan:
    """Which bucket each sample is in, and the schedule.

    Attributes:
        column: the score column.
        edges: the inner cut points (bucket ``b`` holds values in ``[edges[b-1], edges[b])``;
            missing values go to the last, hardest bucket).
        bucket_of: bucket number per global sample index.
        schedule: bucket weights over steps.
        batch_size: samples per step (the global batch; :class:`winnow.cache.StreamingDataset`
            replaces it with its own ``world_size * batch_size``).
        seed: the seed of the step draws and the per-pass permutations (the loader replaces it
            with its own seed).
    """

    column: str
    edges: np.ndarray
    bucket_of: np.ndarray
    schedule: Schedule
    batch_size: int
    seed: int = 0
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ConfigError("curriculum.batch_size", self.batch_size, "a positive integer")
        b = np.asarray(self.bucket_of)
        if b.size and (b.min() < 0 or b.max() >= self.schedule.buckets):
            raise ConfigError("curriculum.bucket_of", f"buckets {int(b.min())}..{int(b.max())}",
                              f"bucket numbers below the schedule's {self.schedule.buckets} buckets")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_memo"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def rebind(self, batch_size: int, seed: int) -> CurriculumPlan:
        """The same buckets and schedule with another global batch and seed."""
        if int(batch_size) == self.batch_size and int(seed) == self.seed:
            return self
        return replace(self, batch_size=int(batch_size), seed=int(seed))

    def members(self, bucket: int) -> np.ndarray:
        return np.flatnonzero(self.bucket_of == bucket)

    def sizes(self) -> np.ndarray:
        """Samples per bucket."""
        s = self._memo.get("sizes")
        if s is None:
            s = self._memo["sizes"] = np.bincount(np.asarray(self.bucket_of, dtype=np.int64),
                                                  minlength=self.schedule.buckets)
        return s

    def steps_per_pass(self) -> np.ndarray:
        """Whole steps in one pass over each bucket (at least 1)."""
        return np.maximum(self.sizes() // self.batch_size, 1)

    def bucket_per_step(self, start: int, stop: int) -> np.ndarray:
        """The bucket drawn for each step in ``[start, stop)`` (a pure function of seed and step)."""
        return weighted_draws((self.seed, _DRAW_SALT), self.schedule, start, stop)

    def uses_before(self, step: int) -> np.ndarray:
        """How many of the steps ``[0, step)`` drew each bucket (memoised per chunk)."""
        prefix = self._memo.setdefault("prefix", [np.zeros(self.schedule.buckets, dtype=np.int64)])
        c = step // DRAW_CHUNK
        while len(prefix) <= c:
            k = len(prefix) - 1
            drawn = self.bucket_per_step(k * DRAW_CHUNK, (k + 1) * DRAW_CHUNK)
            prefix.append(prefix[-1] + np.bincount(drawn, minlength=self.schedule.buckets))
        out = prefix[c].copy()
        if step > c * DRAW_CHUNK:
            out += np.bincount(self.bucket_per_step(c * DRAW_CHUNK, step), minlength=self.schedule.buckets)
        return out

    def locate(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each step in ``[start, stop)``: its bucket, the pass over that bucket it falls in,
        and the offset of its first sample within that pass (a multiple of ``batch_size``).

        The ``n``-th step that draws bucket ``b`` takes samples ``[k*B, (k+1)*B)`` of pass ``p``
        of ``b``, with ``p, k = divmod(n, steps_per_pass()[b])``: each sample of a bucket once
        per pass. Raises ConfigError if a step draws an empty bucket.
        """
        drawn = self.bucket_per_step(start, stop)
        use = np.empty(len(drawn), dtype=np.int64)
        before = self.uses_before(start)
        for b in np.unique(drawn).tolist():
            at = np.flatnonzero(drawn == b)
            use[at] = before[b] + np.arange(len(at))
        sizes = self.sizes()
        if len(drawn) and (sizes[drawn] == 0).any():
            s = start + int(np.flatnonzero(sizes[drawn] == 0)[0])
            raise ConfigError("curriculum.schedule", f"bucket {int(drawn[s - start])} at step {s}",
                              "weight only on buckets that hold samples")
        per = self.steps_per_pass()[drawn]
        passes, k = np.divmod(use, per)
        return drawn, passes, k * self.batch_size

    def _permutation(self, bucket: int, pass_: int) -> np.ndarray:
        memo = self._memo.setdefault("perm", {})
        key = (bucket, pass_)
        p = memo.get(key)
        if p is None:
            m = self.members(bucket)
            p = memo[key] = m[np.random.default_rng([self.seed, bucket, pass_, _PERM_SALT]).permutation(m.size)]
            while len(memo) > 2 * self.schedule.buckets:
                memo.pop(next(iter(memo)))
        return p

    def batches(self, start: int, stop: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(step, bucket, global sample indices)`` for steps ``[start, stop)``, each pass over a
        bucket in a seeded permutation of its members (the plan's reference order; the loader
        keeps the same bucket, pass and offset per step but visits a pass in its shuffle blocks)."""
        drawn, passes, offsets = self.locate(start, stop)
        for i in range(len(drawn)):
            b, off = int(drawn[i]), int(offsets[i])
            yield start + i, b, self._permutation(b, int(passes[i]))[off:off + self.batch_size]

    def fingerprint(self) -> str:
        """A hash of the buckets and the schedule (not of the batch size or seed)."""
        f = self._memo.get("fingerprint")
        if f is None:
            h = xxhash.xxh3_64()
            h.update(np.ascontiguousarray(self.bucket_of, dtype=np.int32).tobytes())
            h.update(json.dumps(self.schedule.to_json()).encode())
            f = self._memo["fingerprint"] = h.hexdigest()
        return f

    def to_json(self) -> str:
        return json.dumps({"column": self.column, "edges": [float(e) for e in self.edges],
                           "bucket_of": self.bucket_of.astype(int).tolist(), "schedule": self.schedule.to_json(),
                           "batch_size": self.batch_size, "seed": self.seed})

    @classmethod
    def from_json(cls, text: str | bytes) -> CurriculumPlan:
        try:
            d = json.loads(text)
            return cls(d["column"], np.asarray(d["edges"], dtype=np.float64),
                       np.asarray(d["bucket_of"], dtype=np.int32), Schedule(d["schedule"]), int(d["batch_size"]),
                       int(d["seed"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError("curriculum", f"{type(exc).__name__}: {exc}",
                              "a curriculum.json written by winnow.curriculum") from exc


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


def column_values(run_dir: str, column: str, storage_options: Mapping[str, Any] | None = None) -> np.ndarray:
    """One numeric column of a run's shards, in global sample order (the manifest's shard order).

    Only that column is kept in memory (one record batch at a time is read).

    Raises:
        ConfigError: the column is missing or not numeric.
    """
    import fsspec
    import pyarrow as pa

    from winnow.format import Manifest
    from winnow.shardio import join_uri

    opts = dict(storage_options or {})
    with fsspec.open(join_uri(run_dir, "index.json"), "rb", **opts) as fh:
        m = Manifest.loads(fh.read())
    if column not in m.schema.names:
        raise ConfigError("curriculum.column", column, f"a column of the shards ({', '.join(m.schema.names)})")
    t = m.schema.field(column).type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        raise ConfigError("curriculum.column", column, f"a numeric column (it is {t})")
    parts = []
    for s in m.shards:
        with fsspec.open(join_uri(run_dir, s.path), "rb", **opts) as fh:
            reader = pa.ipc.open_file(fh)
            for i in range(reader.num_record_batches):
                col = reader.get_batch(i).column(column)
                parts.append(col.to_numpy(zero_copy_only=False).astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros(0)


#: The file name :func:`write_curriculum` writes beside ``index.json``.
CURRICULUM_FILE = "curriculum.json"


def write_curriculum(run_dir: str, column: str, schedule: Schedule, *, ascending: bool = True,
                     batch_size: int = 1, seed: int = 0, name: str = CURRICULUM_FILE,
                     storage_options: Mapping[str, Any] | None = None) -> CurriculumPlan:
    """Plan a curriculum from ``column`` of a finished run and write it beside the manifest.

    The loader reads it with ``StreamingDataset(..., curriculum="curriculum.json")``.

    Returns:
        The plan written to ``<run_dir>/<name>``.
    """
    import fsspec

    from winnow.shardio import join_uri

    plan = plan_curriculum(column_values(run_dir, column, storage_options), column, schedule, batch_size,
                           seed=seed, ascending=ascending)
    uri = join_uri(run_dir, name)
    fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    tmp = f"{path}.tmp-{os.getpid()}"
    with fs.open(tmp, "wb") as fh:
        fh.write(plan.to_json().encode())
    fs.mv(tmp, path)
    return plan


def _parse_schedule(text: str) -> Schedule:
    try:
        return Schedule(json.loads(text))
    except ValueError as exc:
        raise ConfigError("--schedule", text, "JSON such as [[0, [1, 0]], [1000, [0.7, 0.3]], [2000, [0, 1]]]") from exc


def main(argv: Sequence[str] | None = None, prog: str = "python -m winnow.curriculum") -> int:
    """``python -m winnow.curriculum RUN --column C --steps N``: write ``RUN/curriculum.json``."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog=prog,
                                description="Split a run's samples into difficulty buckets at quantiles of a numeric "
                                            "column and write the curriculum beside its index.json.")
    p.add_argument("run", help="the run's output directory (any fsspec URL)")
    p.add_argument("--column", required=True, help="numeric score column (e.g. quality_score)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--steps", type=int, help="training steps of the simple -> 70/30 -> complex schedule")
    g.add_argument("--schedule", type=_parse_schedule, help="your own schedule as JSON [[step, [w0, w1, ...]], ...]")
    p.add_argument("--descending", action="store_true", help="high values are simple (e.g. a quality score)")
    args = p.parse_args(argv)
    try:
        schedule = args.schedule if args.schedule is not None else simple_to_complex(args.steps)
        plan = write_curriculum(args.run, args.column, schedule, ascending=not args.descending)
    except WinnowError as exc:
        print(f"winnow: error: {exc}", file=sys.stderr)
        return 2
    sizes = ", ".join(str(int(n)) for n in plan.sizes())
    print(f"wrote {args.run.rstrip('/')}/{CURRICULUM_FILE}: {len(plan.bucket_of)} samples in buckets of "
          f"{sizes} by {args.column} (cuts {', '.join(f'{e:.6g}' for e in plan.edges)})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Sample order: a pure function of (seed, epoch, manifest), and its split over ranks and workers.

The epoch order is built in two levels so that a reader needs only a few shards at a time:

1. The shards are permuted (seeded by ``seed`` and ``epoch``).
2. Consecutive shards of that permutation are grouped into *blocks* of at least
   ``block_samples`` rows; the samples of each block are permuted (seeded by ``seed``,
   ``epoch`` and the block number).

The result, :class:`EpochOrder`, maps a global position ``0 <= p < N`` to a sample id (the
row's index in manifest order). It never depends on the number of nodes, ranks or workers.
:class:`RankPlan` then cuts that sequence into equal per-rank steps of ``batch_size`` samples,
and :func:`worker_steps` deals a rank's steps to DataLoader workers round-robin (single steps, or
chunks of consecutive steps shipped as one DataLoader item), which is the order in which a
DataLoader hands worker outputs back, so the rank sees its steps in order.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from winnow.errors import CacheError, ConfigError

__all__ = ["EpochOrder", "RankPlan", "worker_steps", "worker_chunks", "check_global_step", "PARTITIONS"]

#: ``interleave``: global step s is positions [s*G, (s+1)*G), rank r takes its r-th slice
#: (the samples of a global step are the same whatever the world size).
#: ``contiguous``: each rank takes one contiguous range of the epoch order (each node then
#: reads a disjoint part of the shards; the samples of a step depend on the world size).
PARTITIONS = ("interleave", "contiguous")


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))


class EpochOrder:
    """The order of one epoch's samples.

    Args:
        rows: rows per shard, in manifest order.
        seed: shuffle seed (non-negative).
        epoch: epoch number (non-negative).
        shuffle: if False the order is the manifest order.
        block_samples: minimum rows per shuffle block (blocks are whole shards).
    """

    def __init__(self, rows: Sequence[int], *, seed: int, epoch: int, shuffle: bool, block_samples: int) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.offsets = np.zeros(len(self.rows) + 1, dtype=np.int64)
        np.cumsum(self.rows, out=self.offsets[1:])
        self.total = int(self.offsets[-1])
        self.seed, self.epoch, self.shuffle = int(seed), int(epoch), bool(shuffle)
        n = len(self.rows)
        self.shard_order = _rng(self.seed, self.epoch, 0).permutation(n) if shuffle else np.arange(n)
        blocks: list[np.ndarray] = []
        cur: list[int] = []
        acc = 0
        for s in self.shard_order:
            cur.append(int(s))
            acc += int(self.rows[s])
            if acc >= block_samples:
                blocks.append(np.asarray(cur, dtype=np.int64))
                cur, acc = [], 0
        if cur:
            blocks.append(np.asarray(cur, dtype=np.int64))
        self.blocks: list[np.ndarray] = blocks
        sizes = np.asarray([int(self.rows[b].sum()) for b in blocks], dtype=np.int64)
        self.block_start = np.zeros(len(blocks) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.block_start[1:])
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def block_ids(self, b: int) -> np.ndarray:
        """Sample ids of block ``b`` in epoch order (cached for the last few blocks)."""
        ids = self._cache.get(b)
        if ids is not None:
            return ids
        shards = self.blocks[b]
        ids = np.concatenate([np.arange(self.offsets[s], self.offsets[s + 1]) for s in shards])
        if self.shuffle:
            ids = ids[_rng(self.seed, self.epoch, 1, b).permutation(len(ids))]
        self._cache[b] = ids
        if len(self._cache) > 4:
            self._cache.popitem(last=False)
        return ids

    def block_of(self, position: int) -> int:
        """The block holding global position ``position`` (taken modulo the epoch size)."""
        return int(np.searchsorted(self.block_start, position % self.total, side="right") - 1)

    def ids(self, start: int, count: int) -> np.ndarray:
        """Sample ids at global positions ``start .. start+count-1``; positions past the end wrap."""
        out = np.empty(count, dtype=np.int64)
        done = 0
        pos = start % self.total
        while done < count:
            b = int(np.searchsorted(self.block_start, pos, side="right") - 1)
            lo = pos - int(self.block_start[b])
            take = min(count - done, int(self.block_start[b + 1]) - pos)
            out[done:done + take] = self.block_ids(b)[lo:lo + take]
            done += take
            pos = (pos + take) % self.total
        return out

    def all_ids(self) -> np.ndarray:
        """The whole epoch order (for tests and small datasets)."""
        return np.concatenate([self.block_ids(b) for b in range(len(self.blocks))])


def check_global_step(total: int, world: int, batch_size: int, drop_last: bool, what: str = "the dataset") -> None:
    """Raise :class:`ConfigError` unless the epoch holds at least one global step.

    A global step is ``world * batch_size`` samples. With fewer samples than that the epoch is
    either empty (``drop_last=True``) or one step padded by wrapping the order, in which a sample
    comes back two or more times within the same global step (``drop_last=False``). Both are
    refused: the wrap padding is only ever what completes the epoch's last global step, which
    then repeats fewer samples than the epoch holds (each sample at most twice per epoch).

    Args:
        total: samples in the epoch.
        world: number of ranks.
        batch_size: samples per step per rank.
        drop_last: the plan's ``drop_last``.
        what: how the message names the dataset (its URL).
    """
    g = world * batch_size
    if total >= g:
        return
    if total == 0:
        effect = "the epoch has no sample"
    elif drop_last:
        effect = "with drop_last=True the epoch would have no step at all"
    else:
        copies = math.ceil(g / total)
        effect = (f"with drop_last=False the one step would be padded with {g - total} repeats, a sample up to "
                  f"{copies} times in the same global step")
    if total == 0:
        fix = "stream a dataset that has samples"
    elif total >= world:
        fix = f"use batch_size <= {total // world} with world_size={world}, or fewer ranks"
    else:
        fix = f"the dataset has fewer samples than ranks: use at most {total} ranks, or a larger dataset"
    raise ConfigError("batch_size", batch_size,
                      f"batch_size x world_size ({batch_size} x {world} = {g}) at most the {total} samples of {what}",
                      f"{effect}; {fix}")


@dataclass(frozen=True)
class RankPlan:
    """One rank's share of an epoch: ``steps`` batches of ``batch_size`` positions each.

    Every rank gets the same number of steps. With ``drop_last`` the tail that does not fill
    a step on every rank is left out; otherwise the last steps wrap to the start of the epoch
    order (those samples are seen twice, as with ``DistributedSampler``). The epoch must hold
    at least one global step (``world * batch_size`` samples; see :func:`check_global_step`), so
    the padding never repeats a sample more than once.

    Attributes:
        total: samples in the epoch.
        world: number of ranks.
        rank: this rank.
        batch_size: samples per step per rank.
        drop_last: drop, rather than pad, the ragged tail.
        partition: one of :data:`PARTITIONS`.
        start: global positions already consumed before this plan (resume, ``interleave``).
        skip: steps of this rank already consumed (resume, ``contiguous``).
    """

    total: int
    world: int
    rank: int
    batch_size: int
    drop_last: bool = False
    partition: str = "interleave"
    start: int = 0
    skip: int = 0

    def __post_init__(self) -> None:
        if self.partition not in PARTITIONS:
            raise CacheError(f"partition={self.partition!r}; expected one of {PARTITIONS}")
        if not 0 <= self.rank < self.world:
            raise CacheError(f"rank={self.rank} is outside world_size={self.world}")
        check_global_step(self.total, self.world, self.batch_size, self.drop_last)

    @property
    def _per_rank_steps(self) -> int:
        if self.partition == "interleave":
            remaining = max(self.total - self.start, 0)
            g = self.world * self.batch_size
            return remaining // g if self.drop_last else math.ceil(remaining / g)
        per_rank = self.total // self.world if self.drop_last else math.ceil(self.total / self.world)
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    @property
    def steps(self) -> int:
        """Steps left for this rank in this epoch (the same on every rank)."""
        return max(self._per_rank_steps - self.skip, 0)

    def position(self, step: int) -> int:
        """Global position of the first sample of this rank's ``step`` (0-based, after resume)."""
        if self.partition == "interleave":
            return self.start + step * self.world * self.batch_size + self.rank * self.batch_size
        return (self.rank * self._per_rank_steps + self.skip + step) * self.batch_size

    def resumed(self, steps_done: int) -> "RankPlan":
        """The plan after this rank consumed ``steps_done`` more steps."""
        if self.partition == "interleave":
            new_start = min(self.start + steps_done * self.world * self.batch_size, self.total)
            return RankPlan(self.total, self.world, self.rank, self.batch_size, self.drop_last,
                            self.partition, new_start, 0)
        return RankPlan(self.total, self.world, self.rank, self.batch_size, self.drop_last,
                        self.partition, self.start, self.skip + steps_done)


def worker_steps(steps: int, worker: int, num_workers: int, chunk: int = 1) -> range | list[int]:
    """The steps a DataLoader worker produces, in the order it produces them.

    Steps are dealt in chunks of ``chunk`` consecutive steps, round-robin over the workers:
    step ``s`` belongs to worker ``(s // chunk) % num_workers``. With ``chunk=1`` that is
    ``worker, worker+W, ...``. A DataLoader asks its workers round-robin and returns their
    outputs in that order, so if each worker yields one item per chunk the rank receives steps
    0, 1, 2, ... whatever ``num_workers`` and ``chunk`` are.
    """
    if chunk == 1:
        return range(worker, steps, num_workers)
    return [s for c in worker_chunks(steps, worker, num_workers, chunk) for s in c]


def worker_chunks(steps: int, worker: int, num_workers: int, chunk: int) -> list[range]:
    """The chunks of :func:`worker_steps`: ranges of up to ``chunk`` consecutive steps.

    Chunk ``c`` is steps ``[c*chunk, min((c+1)*chunk, steps))``; only the epoch's last chunk may
    be short. Worker ``w`` gets chunks ``w, w+W, ...``.
    """
    if chunk < 1 or num_workers < 1 or not 0 <= worker < num_workers:
        raise CacheError(f"worker_chunks(worker={worker}, num_workers={num_workers}, chunk={chunk}) is invalid")
    n = -(-steps // chunk) if steps > 0 else 0
    return [range(c * chunk, min((c + 1) * chunk, steps)) for c in range(worker, n, num_workers)]

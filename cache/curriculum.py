"""A curriculum over a dataset's shards: which samples each global step reads.

:class:`~winnow.curriculum.CurriculumPlan` says, for every training step, which difficulty
bucket it draws and which batch of which pass over that bucket it takes
(:meth:`~winnow.curriculum.CurriculumPlan.locate`). :class:`CurriculumOrder` turns that into
sample ids with the loader's locality: pass ``p`` over bucket ``b`` is the epoch order
:class:`~winnow.cache.order.EpochOrder` of "epoch" ``p`` (same seed, shuffle and blocks) with
only bucket ``b``'s samples kept. A pass therefore walks the shuffle blocks one after another,
each bucket's reader sits in one or two blocks at a time, and every sample of a bucket comes
once per pass. Global step ``g`` holds ``world_size * batch_size`` samples; rank ``r`` takes
its ``r``-th slice, as with ``partition="interleave"``. Nothing depends on the number of ranks
(for a fixed global batch) or workers.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from winnow.curriculum import CurriculumPlan
from winnow.errors import ConfigError

from winnow.cache.order import EpochOrder

__all__ = ["CurriculumOrder"]


class CurriculumOrder:
    """Sample ids of curriculum steps over one manifest.

    Args:
        plan: the buckets and schedule (its batch size and seed are replaced by ``global_batch``
            and ``seed``).
        rows: rows per shard, in manifest order.
        seed: the dataset's seed.
        shuffle: the dataset's shuffle setting (False: passes follow the manifest order).
        block_samples: the dataset's ``shuffle_block``.
        global_batch: samples per global step (``world_size * batch_size``).

    Raises:
        ConfigError: the plan does not fit the manifest, or a bucket the schedule uses holds
            fewer samples than one global step.
    """

    def __init__(self, plan: CurriculumPlan, rows: np.ndarray | list[int], *, seed: int, shuffle: bool,
                 block_samples: int, global_batch: int) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        total = int(self.rows.sum())
        if len(plan.bucket_of) != total:
            raise ConfigError("curriculum", f"a plan of {len(plan.bucket_of)} samples",
                              f"one bucket per sample of this manifest ({total})",
                              "plan it from this run's shards (winnow.curriculum.write_curriculum)")
        self.plan = plan.rebind(global_batch, seed)
        self.global_batch = int(global_batch)
        self.seed, self.shuffle, self.block_samples = int(seed), bool(shuffle), int(block_samples)
        self.buckets = plan.schedule.buckets
        sizes = self.plan.sizes()
        used = (plan.schedule.weights > 0).any(axis=0)
        short = [b for b in range(self.buckets) if used[b] and sizes[b] < self.global_batch]
        if short:
            raise ConfigError("curriculum", f"buckets {short} of {[int(n) for n in sizes]} samples",
                              f"at least one global step ({self.global_batch} samples) in every bucket the "
                              "schedule uses", "use fewer buckets or a smaller batch")
        self.steps_per_epoch = total // self.global_batch
        if self.steps_per_epoch < 1:
            raise ConfigError("batch_size", self.global_batch, f"at most the {total} samples of the dataset")
        shard = np.repeat(np.arange(len(self.rows)), self.rows)
        b = np.asarray(self.plan.bucket_of, dtype=np.int64)
        #: samples of each bucket in each shard, shape (shards, buckets)
        self.shard_counts = np.bincount(shard * self.buckets + b, minlength=len(self.rows) * self.buckets
                                        ).reshape(len(self.rows), self.buckets)
        self._orders: OrderedDict[int, tuple[EpochOrder, np.ndarray]] = OrderedDict()
        self._blocks: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_orders"], state["_blocks"] = OrderedDict(), OrderedDict()
        return state

    @property
    def fingerprint(self) -> str:
        return self.plan.fingerprint()

    def pass_order(self, p: int) -> tuple[EpochOrder, np.ndarray]:
        """Pass ``p``'s epoch order and, per block and bucket, where the bucket's part begins
        (shape ``(blocks + 1, buckets)``, cumulative)."""
        hit = self._orders.get(p)
        if hit is not None:
            self._orders.move_to_end(p)
            return hit
        o = EpochOrder(self.rows, seed=self.seed, epoch=p, shuffle=self.shuffle, block_samples=self.block_samples)
        starts = np.zeros((len(o.blocks) + 1, self.buckets), dtype=np.int64)
        for j, shards in enumerate(o.blocks):
            starts[j + 1] = starts[j] + self.shard_counts[shards].sum(axis=0)
        self._orders[p] = (o, starts)
        if len(self._orders) > 2 * self.buckets + 2:
            self._orders.popitem(last=False)
        return o, starts

    def block_ids(self, p: int, b: int, j: int) -> np.ndarray:
        """Bucket ``b``'s samples of block ``j`` of pass ``p``, in order."""
        key = (p, b, j)
        ids = self._blocks.get(key)
        if ids is None:
            o, _ = self.pass_order(p)
            all_ids = o.block_ids(j)
            ids = all_ids[self.plan.bucket_of[all_ids] == b]
            self._blocks[key] = ids
            if len(self._blocks) > 4 * self.buckets:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        return ids

    def locate(self, gsteps: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For global steps ``gsteps`` (sorted) and offsets inside each step: the bucket, the pass,
        the position inside that pass over the bucket, and the block of pass order it starts in."""
        gsteps = np.asarray(gsteps, dtype=np.int64)
        if not len(gsteps):
            e = np.zeros(0, dtype=np.int64)
            return e, e, e, e
        lo, hi = int(gsteps[0]), int(gsteps[-1]) + 1
        bucket, passes, first = self.plan.locate(lo, hi)
        i = gsteps - lo
        bucket, passes = bucket[i], passes[i]
        pos = first[i] + np.asarray(offsets, dtype=np.int64)
        block = np.empty(len(gsteps), dtype=np.int64)
        for p, b in {(int(p), int(b)) for p, b in zip(passes.tolist(), bucket.tolist())}:
            at = np.flatnonzero((passes == p) & (bucket == b))
            _, starts = self.pass_order(p)
            block[at] = np.searchsorted(starts[:, b], pos[at], side="right") - 1
        return bucket, passes, pos, block

    def ids(self, b: int, p: int, pos: int, count: int) -> np.ndarray:
        """``count`` sample ids of pass ``p`` over bucket ``b`` from position ``pos``."""
        _, starts = self.pass_order(p)
        col = starts[:, b]
        j = int(np.searchsorted(col, pos, side="right") - 1)
        lo = pos - int(col[j])
        ids = self.block_ids(p, b, j)
        if lo + count <= len(ids):
            return ids[lo:lo + count].copy()  # handed out: never a view of the cache
        out = np.empty(count, dtype=np.int64)
        done = 0
        while done < count:
            ids = self.block_ids(p, b, j)
            take = min(count - done, len(ids) - lo)
            out[done:done + take] = ids[lo:lo + take]
            done += take
            j, lo = j + 1, 0
        return out

    def shards(self, p: int, j: int) -> list[int]:
        """The shards of block ``j`` of pass ``p`` (what the prefetcher downloads)."""
        o, _ = self.pass_order(p)
        return [int(s) for s in o.blocks[j]]

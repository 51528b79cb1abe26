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

import os
import time
from collections import OrderedDict
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from winnow.curriculum import CURRICULUM_FILE, CurriculumPlan, Schedule, column_values, plan_curriculum
from winnow.errors import ConfigError

from winnow.cache.collate import samples, step_to_torch
from winnow.cache.loader import TransferChunk
from winnow.cache.order import EpochOrder, RankPlan, worker_chunks
from winnow.cache.remote import Remote

__all__ = ["CurriculumOrder", "load_curriculum", "iter_curriculum"]


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


def load_curriculum(spec: Any, remote: Remote, storage_options: Mapping[str, Any] | None, rows: Sequence[int], *,
                    seed: int, shuffle: bool, block_samples: int, world_size: int, batch_size: int,
                    partition: str) -> CurriculumOrder:
    """The :class:`CurriculumOrder` of a ``StreamingDataset(curriculum=spec)`` (see its docs)."""
    if partition != "interleave":
        raise ConfigError("partition", partition, "'interleave' with a curriculum",
                          "a curriculum's global steps are split over ranks like interleave's")
    if isinstance(spec, CurriculumPlan):
        plan = spec
    elif isinstance(spec, str):
        if "://" in spec or os.path.isabs(spec):
            import fsspec

            with fsspec.open(spec, "rb", **dict(storage_options or {})) as fh:
                text = fh.read()
        else:
            text = remote._retrying(f"reading {remote.url}/{spec}", lambda: remote.fs.cat_file(remote.path(spec)))
        plan = CurriculumPlan.from_json(text)
    elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Schedule):
        values = column_values(remote.url, spec[0], storage_options)
        plan = plan_curriculum(values, spec[0], spec[1], world_size * batch_size, seed)
    else:
        raise ConfigError("curriculum", spec, f"a CurriculumPlan, the path of its JSON (e.g. {CURRICULUM_FILE!r}) "
                                              "or (column, Schedule)")
    return CurriculumOrder(plan, rows, seed=seed, shuffle=shuffle, block_samples=block_samples,
                           global_batch=world_size * batch_size)


def iter_curriculum(ds: Any, epoch: int, plan: RankPlan, wi: Any, k: int) -> Iterator[Any]:
    """``StreamingDataset.__iter__`` along its curriculum: the rank's steps dealt to workers and
    transfer chunks exactly as without one, each step's ids from :class:`CurriculumOrder`."""
    wid, nw = (wi.id, wi.num_workers) if wi is not None else (0, 1)
    chunks = worker_chunks(plan.steps, wid, nw, k)
    chunked = ds._ships_chunks(wi)
    if wi is None:
        ds._consumed = 0
    if not chunks:
        return
    cur: CurriculumOrder = ds._curriculum
    rt = ds._runtime()
    ds.cache_needed(epoch)
    steps = np.fromiter((s for c in chunks for s in c), dtype=np.int64)
    bucket, passes, pos, block = (a.tolist() for a in ds._curriculum_where(plan, steps, epoch))
    groups: list[tuple[int, int]] = []  # (pass, block) in the order the steps visit them
    group_of = []
    for p, j in zip(passes, block):
        if not groups or groups[-1] != (p, j):
            groups.append((p, j))
        group_of.append(len(groups) - 1)
    rt.prefetcher.start([cur.shards(p, j) for p, j in groups])
    m, tier, B = rt.metrics, rt.tier, ds.batch_size
    perf = time.perf_counter
    i = 0
    try:
        for chunk in chunks:
            outs = []
            for _ in chunk:
                t0 = perf()
                if i and group_of[i] != group_of[i - 1]:
                    rt.prefetcher.advance(group_of[i])
                out = tier.gather(cur.ids(bucket[i], passes[i], pos[i], B))
                i += 1
                m.steps += 1
                m.samples += B
                m.busy_s += perf() - t0
                if wi is not None:
                    rt.sink.maybe_flush(ds._snapshot, wi.id)
                else:
                    ds._consumed += 1
                if chunked:
                    outs.append(out)
                elif ds.batched:
                    yield step_to_torch(out)
                else:
                    yield from samples(out)
            if outs:
                t0 = perf()
                item = TransferChunk.pack(outs, ds._slot_pool)
                if item.slot is None:
                    m.transfer_fresh += 1
                else:
                    m.transfer_recycled += 1
                m.busy_s += perf() - t0
                yield item
        if wi is None and ds._resume is not None and ds._resume["epoch"] == epoch:
            ds._resume = None  # the resumed epoch is done
    finally:
        rt.prefetcher.stop()
        if wi is not None:
            rt.sink.maybe_flush(ds._snapshot, wi.id, force=True)

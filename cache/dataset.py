"""``StreamingDataset``: the torch-facing loader over the three tiers.

One instance per rank. It reads ``index.json`` from any fsspec URL once, in the constructor;
each process that iterates it (the main process, every DataLoader worker) then builds its own
L1 reader and prefetcher, and all of them share the node's L2 cache directory.

Two ways out:

* ``batched=False`` (default): one ``dict`` per sample; use ``DataLoader(batch_size=B)`` with the
  same ``B`` as ``batch_size`` here.
* ``batched=True``: one ``dict`` of tensors per step of ``batch_size`` samples, gathered with one
  vectorised ``take`` per shard and column; use ``DataLoader(batch_size=None)``. This is the
  fast path: no Python object per sample. Through a :class:`StreamingDataLoader` with workers,
  each worker ships ``transfer_steps`` consecutive steps as one item, which the loader splits
  back into steps (see :mod:`winnow.cache.loader`).
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import xxhash
from torch.utils.data import IterableDataset, get_worker_info

from winnow.curriculum import CurriculumPlan, Schedule
from winnow.errors import CacheError, CacheFullError, ConfigError

from winnow.cache.collate import samples, step_to_torch
from winnow.cache.curriculum import iter_curriculum, load_curriculum
from winnow.cache.loader import TransferChunk
from winnow.cache.memory import INDEX_KEY, MemoryTier
from winnow.cache.metrics import Metrics, MetricsSession, MetricsSink, summarize
from winnow.cache.order import PARTITIONS, EpochOrder, RankPlan, check_global_step, worker_chunks
from winnow.cache.prefetch import Prefetcher
from winnow.cache.remote import Remote, RetryPolicy
from winnow.units import format_size, parse_size
from winnow.cache.store import DiskCache

__all__ = ["StreamingDataset", "detect_rank", "INDEX_KEY"]

_VERIFY = ("fetch", "open")

#: Steps per DataLoader item when ``transfer_steps`` is left at None (batched, through a
#: StreamingDataLoader with workers).
DEFAULT_TRANSFER_STEPS = 8


def _size_at_least(n: int) -> str:
    """``n`` bytes as :func:`format_size` writes it, rounded up so that the text parses to ``>= n``
    (advice such as "raise cache_limit to at least ..." must work when copied)."""
    text, m = format_size(n), int(n)
    step = 10 ** max(0, len(str(m)) - 3)  # the last of format_size's three significant digits
    while parse_size(text) < n:
        m = (m // step + 1) * step
        text = format_size(m)
    return text


def _two_consecutive(sizes: Sequence[int]) -> int:
    """The largest sum of two neighbours in ``sizes`` (the one size if there is only one)."""
    return max(a + b for a, b in zip(sizes, sizes[1:])) if len(sizes) > 1 else int(sizes[0])


def detect_rank() -> tuple[int, int]:
    """``(rank, world_size)`` from ``torch.distributed`` if initialised, else ``RANK``/``WORLD_SIZE``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class _Runtime:
    pid: int
    tier: MemoryTier
    prefetcher: Prefetcher
    metrics: Metrics
    sink: MetricsSink


class StreamingDataset(IterableDataset):
    """Stream a winnow shard directory into PyTorch.

    Args:
        remote: fsspec URL of the directory holding ``index.json`` (``s3://b/run``, ``/data/run``).
        local: node-local cache directory (shared by workers, ranks and datasets).
        cache_limit: byte budget of the L2 cache (``"50GB"``).
        memory_limit: byte budget of L1 per process: mapped shards plus decoded batches.
        columns: columns to read (default all): a list of names, or one name as a string; a sample
            also carries ``_index``, its global id.
        shuffle: shuffle shards and, within blocks, samples.
        seed: shuffle seed; the order is a function of (seed, epoch, manifest) only.
        batch_size: samples per step per rank; ranks get equal step counts. The dataset must hold
            at least one global step (``world_size * batch_size`` samples).
        batched: yield whole steps as dicts of tensors instead of single samples.
        shuffle_block: minimum samples per shuffle block (blocks are whole shards).
        drop_last: drop the tail that does not fill a step on every rank (else wrap and repeat
            the start of the order to complete the last global step).
        partition: ``"interleave"`` or ``"contiguous"`` (see :mod:`winnow.cache.order`).
        prefetch: bytes that may be downloaded ahead of the current block.
        fetch_workers: parallel downloads per process.
        retry: retry policy for the object store.
        storage_options: fsspec options (``client_kwargs={"endpoint_url": ...}``, ...).
        verify: ``"fetch"``: xxh3 at download, size and Arrow structure at each use; ``"open"``:
            also re-hash each cached shard the first time a process maps it.
        rank: this rank (default from torch.distributed or ``RANK``).
        world_size: number of ranks (default from torch.distributed or ``WORLD_SIZE``).
        wait_timeout: longest wait for another process's download or for cache space.
        chunk_bytes: size of one ranged read from the object store.
        transfer_steps: batched mode, DataLoader workers only: consecutive steps a worker ships
            to the main process as one item (split back into single steps, in order, by
            :class:`~winnow.cache.loader.StreamingDataLoader`), which amortises the per-item cost
            of the worker-to-main transfer. ``None`` (default): ``8``. It takes effect only
            through a ``StreamingDataLoader``; iterated in-process, or by a plain ``DataLoader``
            (which could not split the items), the dataset yields single steps. Each worker holds
            up to ``prefetch_factor`` items of that many steps in flight.
        curriculum: follow a curriculum instead of the epoch order (see
            :mod:`winnow.cache.curriculum`): a :class:`~winnow.curriculum.CurriculumPlan`, the
            path of its JSON (relative to ``remote`` unless absolute or a URL; e.g.
            ``"curriculum.json"`` as :func:`winnow.curriculum.write_curriculum` writes it), or
            ``(column, schedule)`` to plan one here from a numeric column of the shards (low is
            simple). Each global step (``world_size * batch_size`` samples) comes from one bucket;
            an epoch is ``total // (world_size * batch_size)`` steps and the schedule's steps count
            on across epochs (epoch ``e`` holds steps ``e * steps_per_epoch ...``). Needs
            ``partition="interleave"``; a sample is then seen once per pass over its bucket, not
            once per epoch.

    Raises:
        ConfigError: a bad argument, or ``world_size * batch_size`` above the dataset's samples
            (the epoch would be empty, or one step repeating samples within itself).
        ManifestError: ``index.json`` is missing or unreadable.
        CacheFullError: ``cache_limit`` is below what two consecutive shuffle blocks need (or below
            the largest shard, which is cached whole).
    """

    def __init__(self, *, remote: str, local: str, cache_limit: int | str = "50GB",
                 memory_limit: int | str = "4GB", columns: Sequence[str] | None = None, shuffle: bool = True,
                 seed: int = 0, batch_size: int = 1, batched: bool = False, shuffle_block: int = 1 << 18,
                 drop_last: bool = False, partition: str = "interleave", prefetch: int | str = "2GB",
                 fetch_workers: int = 4, retry: RetryPolicy | None = None,
                 storage_options: Mapping[str, Any] | None = None, verify: str = "fetch",
                 rank: int | None = None, world_size: int | None = None, wait_timeout: float = 600.0,
                 chunk_bytes: int | str = "16MB", transfer_steps: int | None = None,
                 curriculum: CurriculumPlan | str | tuple[str, Schedule] | None = None) -> None:
        super().__init__()
        if transfer_steps is not None and (isinstance(transfer_steps, bool) or not isinstance(transfer_steps, int)
                                           or transfer_steps < 1):
            raise ConfigError("transfer_steps", transfer_steps, "None or a positive integer")
        self.cache_limit = parse_size(cache_limit, "cache_limit")
        self.memory_limit = parse_size(memory_limit, "memory_limit")
        self.prefetch = parse_size(prefetch, "prefetch")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("batch_size", batch_size, "a positive integer")
        if not isinstance(seed, int) or seed < 0:
            raise ConfigError("seed", seed, "a non-negative integer")
        if partition not in PARTITIONS:
            raise ConfigError("partition", partition, f"one of {PARTITIONS}")
        if verify not in _VERIFY:
            raise ConfigError("verify", verify, f"one of {_VERIFY}")
        if shuffle_block < 1:
            raise ConfigError("shuffle_block", shuffle_block, "a positive number of samples")
        r, w = detect_rank()
        self.rank = r if rank is None else int(rank)
        self.world_size = w if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ConfigError("rank", self.rank, f"0 <= rank < world_size={self.world_size}")
        self.remote = Remote(remote, storage_options, retry, parse_size(chunk_bytes, "chunk_bytes"))
        self.manifest = self.remote.read_manifest()
        if not self.manifest.shards or self.manifest.total_rows == 0:
            raise CacheError(f"{remote}/index.json lists no rows; nothing to stream")
        check_global_step(self.manifest.total_rows, self.world_size, batch_size,
                          bool(drop_last) or curriculum is not None, self.remote.url)
        names = self.manifest.schema.names
        if isinstance(columns, str):  # one column, not its characters
            columns = [columns]
        if columns is not None:
            missing = [c for c in columns if c not in names]
            if missing:
                raise ConfigError("columns", list(columns), f"names from the manifest schema {names}",
                                  f"{missing} are not in {remote}")
        self.columns = list(columns) if columns is not None else None
        self.local = os.path.abspath(local)
        self.shuffle, self.seed, self.batch_size, self.batched = bool(shuffle), seed, batch_size, bool(batched)
        self.shuffle_block, self.drop_last, self.partition = int(shuffle_block), bool(drop_last), partition
        self.fetch_workers, self.verify, self.wait_timeout = int(fetch_workers), verify, float(wait_timeout)
        self.rows = [s.rows for s in self.manifest.shards]
        self.fingerprint = xxhash.xxh3_64_hexdigest("".join(s.xxh3_128 for s in self.manifest.shards).encode())
        self.session = uuid.uuid4().hex[:12]
        self.transfer_steps = transfer_steps
        self._transfer_ok = False  # set in a worker's copy by StreamingDataLoader, which splits chunks
        self._slot_pool: Any = None  # a worker's recycled transfer buffers (set by StreamingDataLoader)
        self._ragged_refs = False  # set by a TokenPacker iterating this: ragged columns as RaggedRefs, not copied
        self._shared_state: Any = None  # a worker's view of the loader's epoch and resume point
        self.epoch = 0
        self._resume: dict[str, Any] | None = None
        self._consumed = 0
        self._orders: dict[int, EpochOrder] = {}
        self._rt: _Runtime | None = None
        self._curriculum = None if curriculum is None else load_curriculum(
            curriculum, self.remote, storage_options, self.rows, seed=self.seed, shuffle=self.shuffle,
            block_samples=self.shuffle_block, world_size=self.world_size, batch_size=self.batch_size,
            partition=self.partition)
        self._retired = Metrics()  # counters of finished DataLoader workers, folded in by close()
        self._metrics_session = MetricsSession(os.path.join(self.local, "metrics"), self.session)
        weakref.finalize(self, self._metrics_session.end)
        self.cache_needed(0)

    @property
    def curriculum(self) -> CurriculumPlan | None:
        """The curriculum this dataset follows (its batch size is the global batch), or None."""
        return None if self._curriculum is None else self._curriculum.plan

    # --- order -------------------------------------------------------------------------
    def order(self, epoch: int | None = None) -> EpochOrder:
        """The epoch's sample order (cached for the last two epochs)."""
        e = self.epoch if epoch is None else int(epoch)
        o = self._orders.get(e)
        if o is None:
            o = EpochOrder(self.rows, seed=self.seed, epoch=e, shuffle=self.shuffle, block_samples=self.shuffle_block)
            if len(self._orders) >= 2:
                self._orders.pop(next(iter(self._orders)))
            self._orders[e] = o
        return o

    def cache_needed(self, epoch: int | None = None) -> int:
        """Bytes of the two largest consecutive shuffle blocks; raises if ``cache_limit`` is smaller.

        The error's advice follows the cause: a shard larger than ``cache_limit`` (shards are
        cached whole, so no ``shuffle_block`` helps), two shards that do not fit together (one
        shard per block is not enough either), or blocks of several shards (then a lower
        ``shuffle_block`` is offered, with what blocks of one shard need in any epoch).
        """
        o = self.order(epoch)
        shard_bytes = [s.bytes for s in self.manifest.shards]
        sizes = [sum(shard_bytes[s] for s in b) for b in o.blocks]
        need = _two_consecutive(sizes)
        # blocks of one shard need at most the two largest shards, whatever the epoch's order
        floor = sum(sorted(shard_bytes)[-2:])
        per = ""
        if self._curriculum is not None:  # one reader position (one or two blocks) per bucket
            need = min(need * self._curriculum.buckets, sum(sizes))
            floor = min(floor * self._curriculum.buckets, sum(sizes))
            per = f" (one reader position per bucket, {self._curriculum.buckets} buckets)"
        if need > self.cache_limit:
            raise CacheFullError(self._cache_full_message(len(o.blocks), shard_bytes, need, floor, per))
        return need

    def _cache_full_message(self, blocks: int, shard_bytes: list[int], need: int, floor: int, per: str) -> str:
        limit, url = format_size(self.cache_limit), self.remote.url
        big = int(np.argmax(shard_bytes))
        one = max(1, min((s.rows for s in self.manifest.shards if s.rows), default=1))
        if shard_bytes[big] > self.cache_limit:
            name = self.manifest.shards[big].path
            lower = f" ({_size_at_least(floor)} with shuffle_block <= {one}, one shard per block)" if floor < need else ""
            return (f"cache_limit={limit} is below the largest shard of {url} ({name}, "
                    f"{format_size(shard_bytes[big])}); shards are cached whole, so no shuffle_block can help: "
                    f"raise cache_limit to at least {_size_at_least(need)}{per}{lower}, or write the run with "
                    f"smaller shards (the pipeline's sink.shard_bytes)")
        what = "the one shuffle block" if blocks == 1 else "two consecutive shuffle blocks"
        head = (f"cache_limit={limit} is below the {_size_at_least(need)} that {what} of {url} "
                f"{'needs' if blocks == 1 else 'need'}{per} (shuffle_block={self.shuffle_block} samples); "
                f"raise cache_limit to at least {_size_at_least(need)}")
        if floor > self.cache_limit:
            return (f"{head}; lowering shuffle_block is not enough: with one shard per block two shards "
                    f"need up to {_size_at_least(floor)}{per}")
        return (f"{head}, or lower shuffle_block to {one} samples or less (one shard per block, which needs "
                f"at most {_size_at_least(floor)}{per} in any epoch)")

    def plan(self, epoch: int | None = None) -> RankPlan:
        """This rank's plan for the epoch, resumed if a state for that epoch was loaded."""
        e = self.epoch if epoch is None else int(epoch)
        if self._curriculum is not None:  # whole global steps; positions count samples of the epoch's steps
            total = self._curriculum.steps_per_epoch * self.world_size * self.batch_size
            p = RankPlan(total, self.world_size, self.rank, self.batch_size, True, "interleave")
        else:
            p = RankPlan(self.order(e).total, self.world_size, self.rank, self.batch_size, self.drop_last,
                         self.partition)
        st = self._resume
        if st is not None and st["epoch"] == e:
            p = RankPlan(p.total, p.world, p.rank, p.batch_size, p.drop_last, p.partition, st["start"], st["skip"])
        return p

    def _curriculum_where(self, plan: RankPlan, steps: np.ndarray, epoch: int) -> tuple[np.ndarray, ...]:
        """Bucket, pass, position in the pass and block of each of this rank's ``steps``."""
        cur = self._curriculum
        assert cur is not None
        g = self.world_size * self.batch_size
        pos = plan.start + steps * g + self.rank * self.batch_size
        return cur.locate(epoch * cur.steps_per_epoch + pos // g, pos % g)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next (call on every rank, as with ``DistributedSampler``)."""
        self.epoch = int(epoch)
        self._consumed = 0

    def __len__(self) -> int:
        """Steps (batched) or samples (per-sample) this rank yields in the current epoch."""
        steps = self.plan().steps
        return steps if self.batched else steps * self.batch_size

    # --- per-process runtime -----------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_rt"] = None
        state["_orders"] = {}
        state["_transfer_ok"] = False
        state["_slot_pool"] = None
        state["_shared_state"] = None
        state["_metrics_session"] = None  # the creating process's; a worker never ends the session
        return state

    def _runtime(self) -> _Runtime:
        rt = self._rt
        if rt is not None and rt.pid == os.getpid():
            return rt
        if rt is not None:  # inherited through fork: close our copies, never unlock the parent's
            rt.tier.abandon()
        cache = DiskCache(self.local, self.cache_limit, self.wait_timeout)
        m = Metrics()
        tier = MemoryTier(self.manifest, self.columns, cache, self.remote, self.memory_limit, self.verify, m)
        budget = max(0, min(self.prefetch, self.cache_limit - self.cache_needed()))
        pf = Prefetcher(cache, self.remote, self.manifest.shards, budget, self.fetch_workers, ready=tier.warm)
        self._rt = _Runtime(os.getpid(), tier, pf, m, MetricsSink(os.path.join(self.local, "metrics"), self.session))
        return self._rt

    def _snapshot(self) -> dict[str, Any]:
        rt = self._runtime()
        m = Metrics()
        m.add(rt.metrics.snapshot())
        m.add(rt.prefetcher.metrics.snapshot())
        return m.snapshot()

    def metrics(self) -> dict[str, Any]:
        """Counters and rates of this process and of the DataLoader workers of this instance."""
        total = Metrics()
        total.add(self._snapshot())
        total.add(self._retired.snapshot())
        total.add(self._runtime().sink.collect().snapshot())
        return summarize(total.snapshot())

    def close(self) -> None:
        """Stop prefetching and unmap everything this process holds.

        In the process that created the dataset, also fold the metrics files of DataLoader
        workers that have exited into this object (:meth:`metrics` keeps counting them) and
        remove the files. The rest of the session's files go when the dataset is garbage
        collected or the interpreter exits.
        """
        rt = self._rt
        if rt is not None and rt.pid == os.getpid():
            rt.prefetcher.stop()
            rt.tier.drop()
        self._rt = None
        ms = self._metrics_session
        if ms is not None and ms.pid == os.getpid():
            self._retired.add(MetricsSink(ms.directory, self.session).retire().snapshot())

    # --- reading -----------------------------------------------------------------------
    def step(self, step: int, epoch: int | None = None) -> dict[str, Any]:
        """The arrays of this rank's ``step`` of ``epoch`` (no prefetch; used by mixing)."""
        plan = self.plan(epoch)
        e = self.epoch if epoch is None else int(epoch)
        if self._curriculum is not None:
            b, p, pos, _ = self._curriculum_where(plan, np.asarray([step], dtype=np.int64), e)
            ids = self._curriculum.ids(int(b[0]), int(p[0]), int(pos[0]), self.batch_size)
        else:
            ids = self.order(epoch).ids(plan.position(step), self.batch_size)
        return self._runtime().tier.gather(ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Random access to one sample by global id (manifest order)."""
        out = self._runtime().tier.gather(np.asarray([index], dtype=np.int64))
        return next(samples(out))

    def _transfer_chunk(self, worker_info: Any) -> int:
        """Steps per yielded item: 1 except in a StreamingDataLoader worker over a batched dataset."""
        if worker_info is None or not self.batched:
            return 1
        k = DEFAULT_TRANSFER_STEPS if self.transfer_steps is None else self.transfer_steps
        if k > 1 and not self._transfer_ok:
            if self.transfer_steps is not None:
                warnings.warn(f"transfer_steps={k} needs StreamingDataLoader to split the chunks; this DataLoader "
                              "worker yields single steps instead", stacklevel=3)
            return 1
        return k

    def _ships_chunks(self, worker_info: Any) -> bool:
        """Whether items go out as :class:`TransferChunk` (a StreamingDataLoader worker over a
        batched dataset, whatever ``transfer_steps``: even one step per item then travels in a
        recycled segment mapped once by the main process, not as tensors pickled one by one)."""
        return worker_info is not None and self.batched and self._transfer_ok

    def _blocks(self, plan: RankPlan, steps: Sequence[int], order: EpochOrder) -> list[int]:
        first = plan.position(steps[0])
        last = plan.position(steps[-1]) + self.batch_size - 1
        b0, b1 = order.block_of(first), order.block_of(last)
        nb = len(order.blocks)
        if last - first + 1 >= order.total:
            return [(b0 + i) % nb for i in range(nb)]
        return list(range(b0, b1 + 1)) if b1 >= b0 else list(range(b0, nb)) + list(range(0, b1 + 1))

    def __iter__(self) -> Iterator[Any]:
        st = self._shared_state
        if st is not None:  # a StreamingDataLoader worker, maybe persistent: the loader says where to start
            self.epoch = int(st[0])
            self._resume = {"epoch": int(st[2]), "start": int(st[3]), "skip": int(st[4])} if st[1] else None
        epoch = self.epoch
        plan = self.plan(epoch)
        wi = get_worker_info()
        wid, nw = (wi.id, wi.num_workers) if wi is not None else (0, 1)
        k = self._transfer_chunk(wi)
        chunked = self._ships_chunks(wi)
        if self._curriculum is not None:
            yield from iter_curriculum(self, epoch, plan, wi, k)
            return
        chunks = worker_chunks(plan.steps, wid, nw, k)
        if wi is None:
            self._consumed = 0
        if not chunks:
            return
        rt = self._runtime()
        self.cache_needed(epoch)
        order = self.order(epoch)
        blocks = self._blocks(plan, [chunks[0][0], chunks[-1][-1]], order)
        rt.prefetcher.start([order.blocks[b] for b in blocks])
        m, tier, B, total = rt.metrics, rt.tier, self.batch_size, order.total
        bp, cur = 0, blocks[0]
        lo, hi = int(order.block_start[cur]), int(order.block_start[cur + 1])
        perf = time.perf_counter
        layout = None  # after one chunk of fixed-shape columns, later chunks are gathered in place
        in_place = self._slot_pool is not None
        try:
            for chunk in chunks:
                outs = []
                item = views = None
                if layout is not None:
                    item, views = TransferChunk.open(layout, len(chunk), B, self._slot_pool)
                for i, s in enumerate(chunk):
                    t0 = perf()
                    pos = plan.position(s) % total
                    if not lo <= pos < hi:
                        b = order.block_of(pos)
                        while bp + 1 < len(blocks) and blocks[bp] != b:
                            bp += 1
                        cur = b
                        lo, hi = int(order.block_start[b]), int(order.block_start[b + 1])
                        rt.prefetcher.advance(bp)
                    if pos + B <= hi:  # the step lies inside the current block: a slice of its order
                        ids = order.block_ids(cur)[pos - lo:pos - lo + B].copy()  # handed out: never a view of the cache
                    else:
                        ids = order.ids(pos, B)
                    if views is not None:
                        into = {name: v[i * B:(i + 1) * B] for name, v in views.items()}
                        out = tier.gather(ids, into)
                        if out is not into:  # this step could not be gathered in place: pack the chunk
                            outs = [{n: v[j * B:(j + 1) * B].copy() for n, v in views.items()} for j in range(i)]
                            self._slot_pool.give_back(item.slot)
                            item = views = layout = None
                            in_place = False  # and stop trying
                    else:
                        out = tier.gather(ids, refs=self._ragged_refs)
                    m.steps += 1
                    m.samples += B
                    m.busy_s += perf() - t0
                    if wi is not None:
                        rt.sink.maybe_flush(self._snapshot, wi.id)
                    else:
                        self._consumed += 1
                    if chunked:
                        if views is None:
                            outs.append(out)
                    elif self.batched:
                        yield step_to_torch(out)
                    else:
                        yield from samples(out)
                if outs or item is not None:
                    t0 = time.perf_counter()
                    if item is None:
                        item = TransferChunk.pack(outs, self._slot_pool)
                        layout = item.layout() if in_place else None
                    if item.slot is None:
                        m.transfer_fresh += 1
                    else:
                        m.transfer_recycled += 1
                    m.busy_s += time.perf_counter() - t0
                    yield item
            if wi is None and self._resume is not None and self._resume["epoch"] == epoch:
                self._resume = None  # the resumed epoch is done
        finally:
            rt.prefetcher.stop()
            if wi is not None:
                rt.sink.maybe_flush(self._snapshot, wi.id, force=True)

    # --- resume ------------------------------------------------------------------------
    def state_dict(self, num_batches: int | None = None, num_samples: int | None = None) -> dict[str, Any]:
        """Where this rank stands, to continue mid-epoch.

        Args:
            num_batches: steps this rank consumed since the current epoch's iteration began
                (a :class:`~winnow.cache.loader.StreamingDataLoader` passes this for you).
            num_samples: the same in samples (divided by ``batch_size``).
                Without either, the count of steps yielded by a ``num_workers=0`` iteration is used.
        """
        if num_batches is None:
            num_batches = self._consumed if num_samples is None else int(num_samples) // self.batch_size
        plan = self.plan().resumed(int(num_batches))
        return {"version": 1, "epoch": self.epoch, "partition": self.partition, "start": plan.start,
                "skip": plan.skip, "world_size": self.world_size, "batch_size": self.batch_size,
                "seed": self.seed, "shuffle": self.shuffle, "shuffle_block": self.shuffle_block,
                "fingerprint": self.fingerprint,
                "curriculum": None if self._curriculum is None else self._curriculum.fingerprint}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``: the next iteration of its epoch skips the consumed samples.

        With ``partition="interleave"`` the world size, batch size and worker count may differ
        from the run that saved the state; with ``"contiguous"`` only the worker count may.

        Raises:
            CacheError: the state belongs to another dataset, seed or shuffle setting.
        """
        for key, mine in (("fingerprint", self.fingerprint), ("seed", self.seed), ("shuffle", self.shuffle),
                          ("shuffle_block", self.shuffle_block), ("partition", self.partition)):
            if state.get(key) != mine:
                raise CacheError(f"state_dict has {key}={state.get(key)!r} but this dataset has {mine!r}; "
                                 "resume with the same manifest and order settings")
        mine = None if self._curriculum is None else self._curriculum.fingerprint
        if state.get("curriculum") != mine:
            raise CacheError(f"state_dict has curriculum={state.get('curriculum')!r} but this dataset has {mine!r}; "
                             "resume with the same curriculum (or none, as when the state was saved)")
        if mine is not None and state["world_size"] * state["batch_size"] != self.world_size * self.batch_size:
            raise CacheError(f"state_dict was saved with a global batch of {state['world_size'] * state['batch_size']} "
                             f"(world_size x batch_size) but this dataset has {self.world_size * self.batch_size}; "
                             "a curriculum resumes only with the same global batch")
        if self.partition == "contiguous" and (state["world_size"], state["batch_size"]) != (self.world_size, self.batch_size):
            raise CacheError("partition='contiguous' resumes only with the same world_size and batch_size; "
                             "use partition='interleave' to change them between runs")
        self.epoch = int(state["epoch"])
        self._resume = {"epoch": self.epoch, "start": int(state["start"]), "skip": int(state["skip"])}
        self._consumed = 0

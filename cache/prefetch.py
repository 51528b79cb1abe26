"""Prefetch along the known sample order: downloads run ahead of the reader, bounded in bytes.

A reader walks the epoch's shuffle blocks in a known order. :class:`Prefetcher` downloads the
shards of the reader's current block and then of the blocks after it into the L2 cache with
``workers`` parallel downloads, as long as the shards fetched ahead of the current block add up
to at most ``budget`` bytes. It holds no lease, so a prefetched shard that nobody needs yet is
evictable like any other; it is the reader that pins what it maps.

Once a shard is in L2 (fetched now or found there), ``ready(shard)`` runs in the download thread:
the reader's :class:`~winnow.cache.memory.MemoryTier` uses it to parse the shard's layout and ask
the kernel to read it ahead, so the reader's own first touch only maps and slices it.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Sequence

from winnow.format import ShardInfo

from winnow.cache.metrics import Metrics
from winnow.cache.remote import Remote
from winnow.cache.store import DiskCache

__all__ = ["Prefetcher"]


class Prefetcher:
    """Background downloads for one reader.

    Args:
        cache: the L2 cache.
        remote: the object store.
        infos: the manifest's shards.
        budget: bytes that may be fetched ahead of the reader's current block.
        workers: parallel downloads.
        ready: called with a shard's id once it is in L2 (advisory: its errors are ignored).
    """

    def __init__(self, cache: DiskCache, remote: Remote, infos: Sequence[ShardInfo], budget: int, workers: int,
                 ready: Callable[[int], None] | None = None) -> None:
        self.cache, self.remote, self.infos, self.ready = cache, remote, infos, ready
        self.budget, self.workers = int(budget), max(1, int(workers))
        self.metrics = Metrics()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._cur = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self, blocks: Sequence[Sequence[int]]) -> None:
        """Begin prefetching ``blocks`` (shard ids, grouped by block, in reading order)."""
        self.stop()
        self._stop = False
        self._cur = 0
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="winnow-fetch")
        self._thread = threading.Thread(target=self._run, args=([list(b) for b in blocks],),
                                        name="winnow-prefetch", daemon=True)
        self._thread.start()

    def advance(self, block_pos: int) -> None:
        """The reader moved to ``blocks[block_pos]``."""
        with self._cond:
            self._cur = block_pos
            self._cond.notify()

    def stop(self) -> None:
        """Stop planning; downloads in flight finish (a partial one is cleaned up by the cache)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _fetch(self, s: int) -> None:
        info = self.infos[s]
        if not self.cache.contains(info):
            lease = self.cache.lease(info, self.remote.download)
            lease.release()
            with self._lock:
                if lease.tier == "l3":
                    self.metrics.prefetched_shards += 1
                self.metrics.prefetch_bytes += lease.fetched_bytes
                self.metrics.prefetch_retries += lease.retries
                self.metrics.checksum_failures += lease.checksum_failures
        if self.ready is not None and not self._stop:
            try:
                self.ready(s)
            except Exception:  # noqa: BLE001 - advisory; the reader's own open reports real problems
                pass

    def _run(self, blocks: list[list[int]]) -> None:
        queue = [(bp, s) for bp, b in enumerate(blocks) for s in b]
        seen: set[int] = set()
        ahead: dict[int, int] = {}  # shard -> block position, for shards submitted past the current block
        inflight: set[Future] = set()
        i = 0
        while True:
            with self._cond:
                if self._stop:
                    return
                cur = self._cur
            for s in [s for s, bp in ahead.items() if bp <= cur]:
                del ahead[s]
            done = {f for f in inflight if f.done()}
            for f in done:
                exc = f.exception()
                if exc is not None and len(self.errors) < 10:
                    self.errors.append(exc)  # the reader meets the same error and raises it
            inflight -= done
            submitted = False
            while i < len(queue) and len(inflight) < self.workers:
                bp, s = queue[i]
                if bp < cur or s in seen:
                    i += 1
                    continue
                if bp > cur:
                    size = self.infos[s].bytes
                    if sum(self.infos[x].bytes for x in ahead) + size > self.budget:
                        break
                    ahead[s] = bp
                seen.add(s)
                assert self._pool is not None
                inflight.add(self._pool.submit(self._fetch, s))
                submitted = True
                i += 1
            if i >= len(queue) and not inflight:
                return
            if inflight and (len(inflight) >= self.workers or not submitted):
                wait(inflight, timeout=0.1, return_when=FIRST_COMPLETED)
            elif not submitted:
                with self._cond:
                    if not self._stop and self._cur == cur:
                        self._cond.wait(timeout=0.1)

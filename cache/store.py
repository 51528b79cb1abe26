"""L2, the local SSD cache: whole shards, content-addressed, shared by every process on a node.

Layout under ``root`` (several datasets may share one root; identical shards are stored once)::

    objects/<aa>/<xxh3>.arrow        complete, verified shards
    tmp/<xxh3>.<pid>.part            downloads in progress (reserved at full size)
    locks/<xxh3>.lock                one flock(2) file per shard
    locks/_space.lock                serialises space reservation and eviction

Coordination uses only ``flock`` and atomic ``rename``, which the kernel cleans up when a
process dies, so a ``kill -9`` at any point leaves no stale lock and no shared memory:

* A process *using* a shard holds a shared flock on its lock file (a :class:`Lease`).
* A process *downloading* or *evicting* a shard holds the exclusive flock. Eviction only
  takes it without blocking, so a shard in use is never evicted.
* A download goes to ``tmp/`` and is renamed into ``objects/`` after its checksum matched.
  A ``.part`` left by a killed process is removed by the next process that takes that shard's
  exclusive lock, or by the space pass (whose non-blocking exclusive lock proves no one owns it).

LRU order is the file's modification time, touched at each lease.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import dataclass
from typing import Callable

from winnow.errors import CacheError, CacheFullError
from winnow.format import ShardInfo

from winnow.units import format_size

__all__ = ["DiskCache", "Lease"]

#: Longest sleep between two looks at a shard another process is downloading. A reader that
#: needs the shard notices the finished download at most this late (two flock calls a look).
_WAIT_POLL_MAX = 0.01


def _try_flock(fd: int, op: int) -> bool:
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


@dataclass
class Lease:
    """A shared hold on a cached shard; the shard cannot be evicted until :meth:`release`.

    Attributes:
        path: the cached file.
        tier: ``"l2"`` if it was already cached, ``"l3"`` if this call downloaded it.
        fetched_bytes: bytes downloaded by this call.
        retries: transient failures retried by this call.
        checksum_failures: downloads whose bytes did not match the manifest.
    """

    path: str
    fd: int
    pid: int
    tier: str = "l2"
    fetched_bytes: int = 0
    retries: int = 0
    checksum_failures: int = 0

    def release(self) -> None:
        """Drop the hold (idempotent; a forked child only closes its copy of the descriptor)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)  # closing the last descriptor of the open file releases the flock

    def __del__(self) -> None:  # a forgotten lease must not pin a shard forever
        try:
            self.release()
        except Exception:
            pass


class DiskCache:
    """The node-local shard cache.

    Args:
        root: cache directory (created if missing).
        limit: byte budget for ``objects/`` plus downloads in progress.
        wait_timeout: longest wait, in seconds, for another process's download or for space.
    """

    def __init__(self, root: str, limit: int, wait_timeout: float = 600.0) -> None:
        self.root = os.path.abspath(root)
        self.limit = int(limit)
        self.wait_timeout = float(wait_timeout)
        for sub in ("objects", "tmp", "locks"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        self.evictions = 0

    # --- paths -------------------------------------------------------------------------
    def object_path(self, digest: str) -> str:
        return os.path.join(self.root, "objects", digest[:2], f"{digest}.arrow")

    def _lock_path(self, digest: str) -> str:
        return os.path.join(self.root, "locks", f"{digest}.lock")

    def _open_lock(self, digest: str) -> int:
        return os.open(self._lock_path(digest), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    # --- public ------------------------------------------------------------------------
    def contains(self, info: ShardInfo) -> bool:
        """Whether a complete copy of the shard is cached (no lock taken)."""
        try:
            return os.stat(self.object_path(info.xxh3_128)).st_size == info.bytes
        except FileNotFoundError:
            return False

    def lease(self, info: ShardInfo, download: Callable[[ShardInfo, int], object]) -> Lease:
        """Hold the shard in the cache, downloading it first if it is missing.

        Args:
            info: the shard as the manifest lists it.
            download: ``download(info, fd)`` writes the verified bytes into ``fd`` and returns
                an object with ``bytes``, ``retries`` and ``checksum_failures``, or raises.

        Raises:
            CacheFullError: no room could be made within ``wait_timeout``.
            CacheError: another process held the shard's lock for longer than ``wait_timeout``.
            FetchError, ChecksumError: from ``download``.
        """
        digest = info.xxh3_128
        obj = self.object_path(digest)
        fd = self._open_lock(digest)
        deadline = time.monotonic() + self.wait_timeout
        lease = Lease(obj, fd, os.getpid())
        sleep = 0.001
        try:
            while True:
                if _try_flock(fd, fcntl.LOCK_SH):
                    try:
                        st = os.stat(obj)
                        if st.st_size == info.bytes:
                            os.utime(obj)
                            return lease
                    except FileNotFoundError:
                        pass
                    fcntl.flock(fd, fcntl.LOCK_UN)
                if _try_flock(fd, fcntl.LOCK_EX):
                    try:
                        if not self.contains(info):
                            self._fill(info, download, lease, deadline)
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    continue
                if time.monotonic() > deadline:
                    raise CacheError(
                        f"waited {self.wait_timeout:.0f}s for shard {info.path} ({digest}) that another process "
                        f"is downloading or evicting in {self.root}; is the object store reachable?"
                    )
                time.sleep(sleep)
                sleep = min(sleep * 2, _WAIT_POLL_MAX)
        except BaseException:
            lease.release()
            raise

    def invalidate(self, info: ShardInfo) -> bool:
        """Delete a cached copy found to be corrupt, unless another process is using it.

        Returns:
            True if the file is gone afterwards.
        """
        fd = self._open_lock(info.xxh3_128)
        deadline = time.monotonic() + min(self.wait_timeout, 30.0)
        try:
            while not _try_flock(fd, fcntl.LOCK_EX):
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
            try:
                os.unlink(self.object_path(info.xxh3_128))
            except FileNotFoundError:
                pass
            return True
        finally:
            os.close(fd)

    # --- internals ---------------------------------------------------------------------
    def _fill(self, info: ShardInfo, download: Callable[[ShardInfo, int], object], lease: Lease,
              deadline: float) -> None:
        """Download under the shard's exclusive lock: reserve, fetch, verify, rename."""
        digest = info.xxh3_128
        tmpdir = os.path.join(self.root, "tmp")
        for name in os.listdir(tmpdir):  # leftovers of a killed downloader of this shard
            if name.startswith(digest + "."):
                _unlink_quiet(os.path.join(tmpdir, name))
        _unlink_quiet(self.object_path(digest))  # a wrong-sized (corrupt) copy
        tmp = self._reserve(info, deadline)
        try:
            tfd = os.open(tmp, os.O_RDWR | os.O_CLOEXEC)
            try:
                stats = download(info, tfd)
            finally:
                os.close(tfd)
            os.makedirs(os.path.dirname(self.object_path(digest)), exist_ok=True)
            os.rename(tmp, self.object_path(digest))
        except BaseException:
            _unlink_quiet(tmp)
            raise
        lease.tier = "l3"
        lease.fetched_bytes += int(getattr(stats, "bytes", info.bytes))
        lease.retries += int(getattr(stats, "retries", 0))
        lease.checksum_failures += int(getattr(stats, "checksum_failures", 0))

    def _entries(self, sub: str) -> list[tuple[str, int, float]]:
        out = []
        base = os.path.join(self.root, sub)
        for dirpath, _, files in os.walk(base):
            for name in files:
                p = os.path.join(dirpath, name)
                try:
                    st = os.stat(p)
                except FileNotFoundError:
                    continue
                out.append((p, st.st_size, st.st_mtime))
        return out

    def _reserve(self, info: ShardInfo, deadline: float) -> str:
        """Make room for ``info.bytes`` and create the download's temp file at full size."""
        space = os.open(os.path.join(self.root, "locks", "_space.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            sleep = 0.005
            while True:
                while not _try_flock(space, fcntl.LOCK_EX):
                    if time.monotonic() > deadline:
                        raise CacheError(f"timed out waiting for the space lock in {self.root}")
                    time.sleep(0.002)
                try:
                    used, in_use = self._make_room(info)
                    if used + info.bytes <= self.limit:
                        tmp = os.path.join(self.root, "tmp", f"{info.xxh3_128}.{os.getpid()}.part")
                        tfd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
                        os.ftruncate(tfd, info.bytes)
                        os.close(tfd)
                        return tmp
                finally:
                    fcntl.flock(space, fcntl.LOCK_UN)
                if time.monotonic() > deadline or info.bytes > self.limit:
                    raise CacheFullError(
                        f"cache_limit={format_size(self.limit)} in {self.root} cannot hold shard {info.path} "
                        f"({format_size(info.bytes)}): {format_size(used)} are cached or downloading and "
                        f"{format_size(in_use)} of that is in use by readers. Raise cache_limit (at least the "
                        "bytes of two shuffle blocks for every dataset sharing this directory) or lower shuffle_block"
                    )
                time.sleep(sleep)  # readers may release shards soon
                sleep = min(sleep * 2, 0.25)
        finally:
            os.close(space)

    def _make_room(self, info: ShardInfo) -> tuple[int, int]:
        """Evict least-recently-used shards nobody uses until ``info`` fits. Returns (used, pinned)."""
        objects = self._entries("objects")
        tmps = self._entries("tmp")
        used = sum(s for _, s, _ in objects) + sum(s for _, s, _ in tmps)
        if used + info.bytes <= self.limit:
            return used, 0
        for path, size, _ in tmps:  # a .part whose shard lock is free belongs to a dead process
            digest = os.path.basename(path).split(".")[0]
            fd = self._open_lock(digest)
            try:
                if _try_flock(fd, fcntl.LOCK_EX):
                    _unlink_quiet(path)
                    used -= size
            finally:
                os.close(fd)
        pinned = 0
        for path, size, _ in sorted(objects, key=lambda e: e[2]):
            if used + info.bytes <= self.limit:
                break
            digest = os.path.basename(path).split(".")[0]
            if digest == info.xxh3_128:
                continue
            fd = self._open_lock(digest)
            try:
                if _try_flock(fd, fcntl.LOCK_EX):
                    _unlink_quiet(path)
                    used -= size
                    self.evictions += 1
                else:
                    pinned += size
            finally:
                os.close(fd)
        return used, pinned


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

"""L3, the object store: manifest reads and whole-shard downloads through fsspec.

Every read is retried with exponential backoff and jitter on transient failures (HTTP 5xx,
connection resets, timeouts, short reads, bytes that do not match the manifest). A shard is
read in ranged chunks; a failed chunk is fetched again from where it broke off, and the
xxh3-128 of the whole shard is checked against the manifest before the caller renames the file
into the cache. A missing object or a refused credential is not transient and fails at once.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import fsspec
import xxhash

from winnow.errors import ChecksumError, FetchError, ManifestError
from winnow.format import Manifest, ShardInfo

__all__ = ["RetryPolicy", "Remote", "FetchStats"]

#: Filesystems inherited through fork: kept referenced so that their finalizers do not try to
#: close the parent's connections from the child's event loop.
_INHERITED: list[Any] = []

#: Errors that retrying cannot fix.
_PERMANENT = (FileNotFoundError, PermissionError, NotImplementedError, TypeError, IsADirectoryError)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a read.

    Attributes:
        attempts: tries per read (chunk or manifest), the first included.
        base_delay: seconds before the first retry; doubles each time.
        max_delay: cap on one delay.
        jitter: a delay is scaled by a uniform factor in [1 - jitter, 1 + jitter].
    """

    attempts: int = 8
    base_delay: float = 0.05
    max_delay: float = 5.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to sleep before retry number ``attempt`` (1-based)."""
        d = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return d * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)


@dataclass
class FetchStats:
    """What one download cost."""

    bytes: int = 0
    retries: int = 0
    checksum_failures: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class ShortReadError(IOError):
    """The store returned fewer bytes than asked for."""


class Remote:
    """An fsspec location holding ``index.json`` and the shards it lists.

    The filesystem object is created lazily in each process (after a fork the parent's
    event loop and connections are not reused).

    Args:
        url: any fsspec URL of the dataset directory (``s3://bucket/run``, ``/data/run``).
        storage_options: passed to the fsspec filesystem (``client_kwargs``, ``key``, ...).
        retry: retry policy.
        chunk_bytes: size of one ranged read.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None,
                 retry: RetryPolicy | None = None, chunk_bytes: int = 16 << 20) -> None:
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.retry = retry or RetryPolicy()
        self.chunk_bytes = int(chunk_bytes)
        self._fs: fsspec.AbstractFileSystem | None = None
        self._root = ""
        self._pid = -1
        self._rng = random.Random()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fs"] = None
        state["_pid"] = -1
        return state

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """This process's filesystem object."""
        if self._fs is None or self._pid != os.getpid():
            if self._fs is not None:
                _INHERITED.append(self._fs)
            protocol = fsspec.core.split_protocol(self.url)[0] or "file"
            cls = fsspec.get_filesystem_class(protocol)
            self._fs = cls(skip_instance_cache=True, **self.storage_options)
            self._root = cls._strip_protocol(self.url)
            self._pid = os.getpid()
            self._rng = random.Random(os.getpid() ^ time.monotonic_ns())
        return self._fs

    def path(self, rel: str) -> str:
        """The filesystem path of ``rel`` under the dataset directory."""
        fs = self.fs
        return f"{self._root}/{rel}" if self._root else rel

    def _retrying(self, what: str, fn: Callable[[], Any], stats: FetchStats | None = None) -> Any:
        last: BaseException | None = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return fn()
            except _PERMANENT as exc:
                raise FetchError(f"{what}: {type(exc).__name__}: {exc}; check the URL and credentials") from exc
            except Exception as exc:  # transient: 5xx, resets, timeouts, short reads
                last = exc
                if stats is not None:
                    stats.retries += 1
                    if len(stats.errors) < 20:
                        stats.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                if attempt < self.retry.attempts:
                    time.sleep(self.retry.delay(attempt, self._rng))
        raise FetchError(
            f"{what} failed {self.retry.attempts} times; last error {type(last).__name__}: {last}. "
            "The object store is unreachable or failing; retry later or raise RetryPolicy.attempts"
        ) from last

    def read_manifest(self) -> Manifest:
        """Read and parse ``index.json``.

        Raises:
            ManifestError: missing or malformed manifest.
            FetchError: the store kept failing.
        """
        path = self.path("index.json")
        try:
            data = self._retrying(f"reading {self.url}/index.json", lambda: self.fs.cat_file(path))
        except FetchError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                raise ManifestError(
                    f"{self.url}/index.json does not exist; point remote= at a finished winnow output directory"
                ) from exc
            raise
        return Manifest.loads(data, where=f"{self.url}/index.json")

    def download(self, info: ShardInfo, fd: int) -> FetchStats:
        """Write the shard's bytes into the open file ``fd`` (from offset 0) and verify them.

        Raises:
            FetchError: a chunk kept failing.
            ChecksumError: the bytes kept disagreeing with the manifest's xxh3-128.
        """
        stats = FetchStats()
        t0 = time.perf_counter()
        path = self.path(info.path)
        for attempt in range(1, self.retry.attempts + 1):
            h = xxhash.xxh3_128()
            off = 0
            while off < info.bytes:
                end = min(off + self.chunk_bytes, info.bytes)

                def chunk(off: int = off, end: int = end) -> bytes:
                    data = self.fs.cat_file(path, start=off, end=end)
                    if len(data) != end - off:
                        raise ShortReadError(f"got {len(data)} bytes of {info.path}[{off}:{end}], expected {end - off}")
                    return data

                data = self._retrying(f"downloading {self.url}/{info.path}", chunk, stats)
                os.pwrite(fd, data, off)
                h.update(data)
                off = end
            stats.bytes += info.bytes
            digest = h.hexdigest()
            if digest == info.xxh3_128:
                os.ftruncate(fd, info.bytes)
                stats.seconds = time.perf_counter() - t0
                return stats
            stats.checksum_failures += 1
            if attempt < self.retry.attempts:
                time.sleep(self.retry.delay(attempt, self._rng))
        raise ChecksumError(
            f"{self.url}/{info.path}: xxh3-128 {digest} != manifest {info.xxh3_128} after "
            f"{self.retry.attempts} downloads; the object was changed after the manifest was written: re-run the pipeline"
        )

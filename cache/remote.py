"""L3, the object store: manifest reads and whole-shard downloads through fsspec.

Every read is retried with exponential backoff and jitter on transient failures (HTTP 5xx,
connection resets, timeouts, short reads, bytes that do not match the manifest). A shard is
read in ranged chunks; a failed chunk is fetched again from where it broke off, and the
xxh3-128 of the whole shard is checked against the manifest before the caller renames the file
into the cache. A missing object or a refused credential is not transient and fails at once.

On S3 (s3fs) a chunk's response body is streamed into the file in the pieces the socket
delivers (about 64-256 kB), hashed and written as it arrives, instead of being assembled into
one ``chunk_bytes`` bytes object first. That keeps a download's memory at a few hundred kB
whatever ``chunk_bytes`` is, and avoids faulting in fresh chunk-sized buffers, which in a newly
forked DataLoader worker cost more CPU than the transfer itself (see ``download``). A chunk that
breaks mid-body resumes from the last byte written. Other filesystems read whole chunks with
``cat_file``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import fsspec
import fsspec.asyn
import xxhash

from winnow.errors import ChecksumError, FetchError, ManifestError
from winnow.format import Manifest, ShardInfo

__all__ = ["RetryPolicy", "Remote", "FetchStats"]

#: Filesystems inherited through fork: kept referenced so that their finalizers do not try to
#: close the parent's connections from the child's event loop.
_INHERITED: list[Any] = []

#: Errors that retrying cannot fix.
_PERMANENT = (FileNotFoundError, PermissionError, NotImplementedError, TypeError, IsADirectoryError)

#: Serialises the lazy creation of a process's filesystem object: the prefetcher's threads all
#: ask for it at once in a new DataLoader worker, and each would otherwise build its own client.
_FS_LOCK = threading.Lock()


def _reset_fs_lock() -> None:  # a lock held by another thread at fork time stays held in the child
    global _FS_LOCK
    _FS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_fs_lock)

#: Largest piece read from a streamed body at once (the socket usually delivers less).
_PIECE = 1 << 20


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


class _LocalWriteError(Exception):
    """Writing the local file failed (disk full, I/O error): not the store's fault, not retried."""


def _pwrite(fd: int, data: bytes, off: int) -> None:
    try:
        os.pwrite(fd, data, off)
    except OSError as exc:
        raise _LocalWriteError(f"writing {len(data)} bytes at {off}: {exc}") from exc


async def _s3_stream(fs: Any, path: str, start: int, end: int, fd: int, h: Any, pos: list[int]) -> None:
    """GET ``path[start:end]`` from S3 and write the body into ``fd`` as it arrives.

    ``pos[0]`` is advanced past every byte written and hashed, so a caller whose call raised
    knows where to resume.
    """
    bucket, key, version = fs.split_path(path)
    extra = {"VersionId": version} if version else {}
    resp = await fs._call_s3("get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **extra)
    body = resp["Body"]
    try:
        length = resp.get("ContentLength")
        if length is not None and int(length) != end - start:
            raise ShortReadError(f"asked for {path}[{start}:{end}], the store answered {length} bytes")
        off = start
        while off < end:
            data = await body.read(min(_PIECE, end - off))
            if not data:
                raise ShortReadError(f"got {off - start} bytes of {path}[{start}:{end}], expected {end - start}")
            _pwrite(fd, data, off)
            h.update(data)
            off += len(data)
            pos[0] = off
    finally:
        body.close()


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
        fs = self._fs
        if fs is not None and self._pid == os.getpid():
            return fs
        with _FS_LOCK:
            if self._fs is None or self._pid != os.getpid():
                if self._fs is not None:
                    _INHERITED.append(self._fs)
                protocol = fsspec.core.split_protocol(self.url)[0] or "file"
                cls = fsspec.get_filesystem_class(protocol)
                self._fs = cls(skip_instance_cache=True, **self.storage_options)
                self._root = cls._strip_protocol(self.url)
                self._rng = random.Random(os.getpid() ^ time.monotonic_ns())
                self._pid = os.getpid()
            return self._fs

    def path(self, rel: str) -> str:
        """The filesystem path of ``rel`` under the dataset directory."""
        self.fs  # noqa: B018 - builds the filesystem, and with it _root, once per process
        return f"{self._root}/{rel}" if self._root else rel

    def _retrying(self, what: str, fn: Callable[[], Any], stats: FetchStats | None = None) -> Any:
        last: BaseException | None = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return fn()
            except _LocalWriteError as exc:
                raise exc.__cause__ or exc  # the local disk, not the store: retrying does not help
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
        fs = self.fs
        stream = callable(getattr(fs, "_call_s3", None)) and getattr(fs, "loop", None) is not None
        for attempt in range(1, self.retry.attempts + 1):
            h = xxhash.xxh3_128()
            off = 0
            while off < info.bytes:
                end = min(off + self.chunk_bytes, info.bytes)
                if stream:
                    pos = [off]

                    def chunk(end: int = end, pos: list[int] = pos) -> None:
                        # resumes from the last byte written if an earlier try broke mid-body
                        fsspec.asyn.sync(fs.loop, _s3_stream, fs, path, pos[0], end, fd, h, pos)

                    self._retrying(f"downloading {self.url}/{info.path}", chunk, stats)
                else:
                    def chunk_bytes(off: int = off, end: int = end) -> bytes:
                        data = fs.cat_file(path, start=off, end=end)
                        if len(data) != end - off:
                            raise ShortReadError(f"got {len(data)} bytes of {info.path}[{off}:{end}], expected {end - off}")
                        return data

                    data = self._retrying(f"downloading {self.url}/{info.path}", chunk_bytes, stats)
                    os.pwrite(fd, data, off)
                    h.update(data)
                    del data
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

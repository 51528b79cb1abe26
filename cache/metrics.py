"""Loader metrics: per-tier hit counts, bytes fetched, stall time; as a dict or for Prometheus.

Each process counts in plain attributes (no locks: one reader thread per process updates
them; the prefetch threads keep their own :class:`Metrics`). DataLoader workers write a JSON
snapshot to ``<cache>/metrics/<session>-w<worker id>.json`` at most once a second and when their
iteration ends (one file per worker slot, carried over from epoch to epoch); the main process
sums its own counters and its session's snapshots. The files live as long as the dataset
(:class:`MetricsSession`): they are removed when it is garbage collected or the interpreter
exits, and those of a killed run by the next dataset created on the cache directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping

__all__ = ["Metrics", "MetricsSink", "MetricsSession", "sweep", "summarize", "serve_prometheus"]


@dataclass
class Metrics:
    """Counters of one process.

    Shard accesses are counted once per step and shard: an L1 hit found the shard mapped,
    an L2 hit mapped it from the local cache, an L3 fetch downloaded it first.
    """

    samples: int = 0
    steps: int = 0
    l1_hits: int = 0
    l2_hits: int = 0
    l3_fetches: int = 0
    l1_evictions: int = 0
    batch_hits: int = 0
    batch_decodes: int = 0
    bytes_fetched: int = 0
    fetch_retries: int = 0
    checksum_failures: int = 0
    corrupt_refetches: int = 0
    prefetched_shards: int = 0
    prefetch_bytes: int = 0
    prefetch_retries: int = 0
    transfer_recycled: int = 0
    transfer_fresh: int = 0
    stall_s: float = 0.0
    busy_s: float = 0.0

    def add(self, other: Mapping[str, Any]) -> None:
        for f in fields(self):
            if f.name in other:
                setattr(self, f.name, getattr(self, f.name) + other[f.name])

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


def summarize(m: Mapping[str, Any]) -> dict[str, Any]:
    """Counters plus derived rates (hit rates per tier, share of time stalled)."""
    out = dict(m)
    acc = m["l1_hits"] + m["l2_hits"] + m["l3_fetches"]
    out["shard_accesses"] = acc
    out["hit_rate_l1"] = m["l1_hits"] / acc if acc else 0.0
    out["hit_rate_l2"] = m["l2_hits"] / acc if acc else 0.0
    out["miss_rate_l3"] = m["l3_fetches"] / acc if acc else 0.0
    dec = m["batch_hits"] + m["batch_decodes"]
    out["hit_rate_batch_lru"] = m["batch_hits"] / dec if dec else 0.0
    out["bytes_fetched_total"] = m["bytes_fetched"] + m["prefetch_bytes"]
    out["stall_share"] = m["stall_s"] / m["busy_s"] if m["busy_s"] else 0.0
    return out


#: A file in the metrics directory with no session lock beside it is removed once this old
#: (seconds): it was written by a worker after its session ended.
ORPHAN_AGE_S = 60.0


def _session_of(name: str) -> str:
    return name.split("-", 1)[0].split(".", 1)[0]


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _try_lock(path: str) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if another process holds a lock on it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def sweep(directory: str) -> int:
    """Remove the files of ended sessions from ``directory``; returns how many.

    A session lives while a process holds a lock on ``<session>.lock`` (the process that
    created the dataset, and the DataLoader workers it forked); the kernel drops the lock when
    they exit, also after ``kill -9``. Files whose session has no lock file at all are removed
    once :data:`ORPHAN_AGE_S` old.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    removed = 0
    sessions: dict[str, list[str]] = {}
    for n in names:
        sessions.setdefault(_session_of(n), []).append(n)
    now = time.time()
    for sess, files in sessions.items():
        lock = f"{sess}.lock"
        if lock in files:
            fd = _try_lock(os.path.join(directory, lock))
            if fd is None:
                continue  # alive
            try:
                for n in files:
                    if n != lock:
                        _remove(os.path.join(directory, n))
                        removed += 1
                _remove(os.path.join(directory, lock))
                removed += 1
            finally:
                os.close(fd)
        else:
            for n in files:
                path = os.path.join(directory, n)
                try:
                    old = now - os.stat(path).st_mtime > ORPHAN_AGE_S
                except OSError:
                    continue
                if old:
                    _remove(path)
                    removed += 1
    return removed


class MetricsSession:
    """The lifetime of one dataset's metrics files, held by the process that created it.

    Creating it removes ended sessions' files (:func:`sweep`) and takes a shared lock on
    ``<dir>/<session>.lock`` (made under a temporary name and renamed, so no sweeper sees it
    unlocked). :meth:`end` (the dataset's finalizer: garbage collection or interpreter exit)
    removes every file of the session. DataLoader workers forked from this process inherit the
    lock, so a session whose creator was killed ends when its workers are gone too.
    """

    def __init__(self, directory: str, session: str) -> None:
        self.directory, self.session, self.pid = directory, session, os.getpid()
        os.makedirs(directory, exist_ok=True)
        sweep(directory)
        tmp = os.path.join(directory, f"{session}.lock.{os.getpid()}.tmp")
        self.fd: int | None = os.open(tmp, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_SH)
        os.replace(tmp, os.path.join(directory, f"{session}.lock"))

    def end(self) -> None:
        """Remove the session's files and drop its lock (only in the process that created it)."""
        if os.getpid() != self.pid or self.fd is None:
            return
        try:
            for n in os.listdir(self.directory):
                if _session_of(n) == self.session and n != f"{self.session}.lock":
                    _remove(os.path.join(self.directory, n))
        except OSError:
            pass
        _remove(os.path.join(self.directory, f"{self.session}.lock"))
        os.close(self.fd)
        self.fd = None


class MetricsSink:
    """Writes a DataLoader worker's snapshot where the main process can sum it.

    One file per worker slot: ``<session>-w<id>.json``. The worker process of a slot holds an
    exclusive flock on ``<session>-w<id>.lock`` for its life and starts from the counts its
    predecessor in the slot (the same worker id in an earlier epoch) left, so the files of a
    session stay at one per worker however many epochs run. A process that finds its slot
    still held (two iterators of one dataset alive at once) writes ``<session>-w<id>-<pid>.json``.
    """

    def __init__(self, directory: str, session: str) -> None:
        self.directory = directory
        self.session = session
        self._last = 0.0
        self.path: str | None = None
        self._fd: int | None = None
        self._base: dict[str, Any] = {}

    def _claim(self, worker: int) -> str:
        os.makedirs(self.directory, exist_ok=True)
        slot = os.path.join(self.directory, f"{self.session}-w{worker}")
        fd = os.open(slot + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self.path = f"{slot}-{os.getpid()}.json"
            return self.path
        self._fd = fd  # held until this process exits
        self.path = slot + ".json"
        try:
            with open(self.path) as f:
                self._base = json.load(f)
        except (OSError, ValueError):
            self._base = {}
        return self.path

    def maybe_flush(self, snap: Callable[[], dict[str, Any]], worker: int = 0, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 1.0:
            return
        self._last = now
        path = self.path or self._claim(worker)
        m = Metrics()
        m.add(self._base)
        m.add(snap())
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(m.snapshot(), f)
        os.replace(tmp, path)

    def _files(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        own = os.path.basename(self.path) if self.path else None
        return [os.path.join(self.directory, n) for n in names
                if n.startswith(self.session + "-w") and n.endswith(".json") and n != own]

    def collect(self) -> Metrics:
        """The sum of the session's worker files (other than this process's own)."""
        total = Metrics()
        for path in self._files():
            try:
                with open(path) as f:
                    total.add(json.load(f))
            except (OSError, ValueError):
                continue
        return total

    def retire(self) -> Metrics:
        """Remove the files of workers that have exited (their slot lock is free) and return
        their counts, for the caller to keep."""
        total = Metrics()
        for path in self._files():
            stem = path[:-len(".json")]
            lock = stem + ".lock" if os.path.exists(stem + ".lock") else None
            fd = _try_lock(lock) if lock else None
            if lock is not None and fd is None:
                continue  # the worker is alive
            try:
                with open(path) as f:
                    total.add(json.load(f))
                _remove(path)
            except (OSError, ValueError):
                pass
            finally:
                if fd is not None:
                    _remove(lock)
                    os.close(fd)
        return total


def serve_prometheus(source: Callable[[], Mapping[str, Any]], port: int = 9464, addr: str = "127.0.0.1",
                     prefix: str = "winnow_loader", rank: int | str = 0) -> Any:
    """Expose ``source()`` (e.g. ``dataset.metrics``) on ``http://addr:port/metrics``.

    The same endpoint as :func:`winnow.monitoring.loader.serve_loader`: the names of
    :data:`winnow.monitoring.names.LOADER` (``winnow_loader_fetched_bytes_total``,
    ``winnow_loader_stall_seconds_total``, ...; each once, counters ending in ``_total``, units
    in the name), labelled ``rank``. ``prefix`` replaces ``winnow_loader`` in every name.
    Needs ``prometheus_client``.

    Returns:
        The ``(server, thread)`` pair from ``prometheus_client.start_http_server``.
    """
    from winnow.monitoring.loader import serve_loader

    return serve_loader(source, port, rank=rank, addr=addr, prefix=prefix)

"""Give freed memory back to the operating system on local runs.

A local run holds every buffered PCollection in one process, and the freed memory of one
stage (decoded dicts, decompressed Arrow buffers) stays in the allocators unless they are told
to return it: glibc keeps freed heap pages for reuse and mimalloc (pyarrow's default pool)
keeps its segments. Measured on 344 MB of JSONL (``normalize``, one worker), peak RSS fell
from 1.45 GB to about 1.0 GB with the settings below, for a few per cent more CPU.

* :func:`tune_local_memory` (called once by ``winnow run`` before a local pipeline starts):
  Arrow allocates from the system allocator, and glibc serves blocks of 1 MiB and more
  (batches, Arrow buffers) with ``mmap``, so freeing one returns it at once. The same settings
  go into the environment, so worker processes that a local runner starts inherit them.
* :func:`release_memory`: ``malloc_trim(0)``, returning the free heap pages; the sink calls it
  around each shard it writes and every stage step at the end of a bundle.

Both are no-ops where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache
from typing import Any

import pyarrow as pa

__all__ = ["tune_local_memory", "release_memory", "MMAP_THRESHOLD"]

#: Allocations of this size and more are mmapped (and returned to the OS when freed).
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def tune_local_memory() -> None:
    """Allocator settings for a local run (see the module docstring); idempotent."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))
    try:
        pa.set_memory_pool(pa.system_memory_pool())
    except (pa.ArrowException, NotImplementedError):
        pass
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_memory() -> None:
    """Return free heap pages to the operating system (glibc's ``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)

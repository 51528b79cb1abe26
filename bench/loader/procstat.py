"""CPU seconds of a live process from /proc (shared by the loader benchmarks)."""

from __future__ import annotations

import os


def proc_cpu(pid: int) -> float:
    """utime + stime of one live process in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            p = f.read().rsplit(")", 1)[1].split()
        return (int(p[11]) + int(p[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0

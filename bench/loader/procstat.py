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


def proc_minflt(pid: int) -> int:
    """Minor page faults of one live process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except (OSError, ValueError, IndexError):
        return 0


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, keyed by its Python thread name (the OS
    thread id for threads Python does not know, e.g. CUDA's or a queue's feeder)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                p = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), f"tid-{tid}")
        out[name] = out.get(name, 0.0) + (int(p[11]) + int(p[12])) / os.sysconf("SC_CLK_TCK")
    return out

"""CPU seconds and page faults of live processes and threads from /proc (shared by the loader
benchmarks)."""

from __future__ import annotations

import os


def _stat(path: str) -> list[str] | None:
    """The fields of a /proc ``stat`` file after the command name (None if it is gone)."""
    try:
        with open(path) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_s(p: list[str]) -> float:
    """utime + stime in seconds of parsed ``stat`` fields."""
    return (int(p[11]) + int(p[12])) / os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """utime + stime of one live process in seconds (0 if it is gone)."""
    p = _stat(f"/proc/{pid}/stat")
    try:
        return _cpu_s(p) if p else 0.0
    except (ValueError, IndexError):
        return 0.0


def proc_minflt(pid: int) -> int:
    """Minor page faults of one live process so far (0 if it is gone)."""
    p = _stat(f"/proc/{pid}/stat")
    try:
        return int(p[7]) if p else 0
    except (ValueError, IndexError):
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
        p = _stat(f"/proc/self/task/{tid}/stat")
        if p is None:
            continue
        name = names.get(int(tid), f"tid-{tid}")
        out[name] = out.get(name, 0.0) + _cpu_s(p)
    return out

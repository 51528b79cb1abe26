"""Live progress of a local run: workers count per stage, the driver shows and serves it.

Worker side: :func:`record` adds one batch's counts of a stage to this process's totals and,
at most once a second, writes them to ``$WINNOW_PROGRESS_DIR/<pid>.json`` (atomically). With
the variable unset (remote runners, tests) it does nothing but return. Driver side:
:class:`ProgressReporter` sets the variable for the run (local workers inherit it), sums the
files every ``interval`` seconds, prints one line per stage that moved (records in, kept,
rejected, dead-lettered, MB/s) and, with a port, serves the same totals on ``/metrics`` under
:data:`~winnow.monitoring.names.PIPELINE` names with the run's id.

The hook: :class:`~winnow.pipeline.stages.base.StageFn` calls :func:`record` once per batch.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from typing import Any, Iterator, TextIO

__all__ = ["record", "flush", "ProgressReporter", "check_port", "port_error", "ENV", "LIVE", "read_totals", "format_line"]

ENV = "WINNOW_PROGRESS_DIR"

#: After this many seconds without a stage moving (or one progress interval, if shorter), a
#: line says the run is still working: no stretch of a run goes without a line for longer.
HEARTBEAT_S = 10.0

#: What the live endpoint serves: index in a stage's totals -> metric name (rejected = in - kept - dead).
LIVE = {0: "winnow_pipeline_stage_records_in_total", 1: "winnow_pipeline_stage_records_out_total",
        3: "winnow_pipeline_stage_dead_letter_total", 4: "winnow_pipeline_stage_bytes_in_total"}

# Per-process totals: stage -> [records_in, kept, rejected, dead_letter, bytes_in].
_totals: dict[str, list[int]] = {}
_last_flush = 0.0
_lock = threading.Lock()


def record(stage: str, records_in: int, kept: int, rejected: int, dead_letter: int, bytes_in: int) -> None:
    """Add one batch of ``stage`` to this process's progress (a no-op without :data:`ENV`)."""
    directory = os.environ.get(ENV)
    if not directory:
        return
    with _lock:
        t = _totals.setdefault(stage, [0, 0, 0, 0, 0])
        t[0] += records_in
        t[1] += kept
        t[2] += rejected
        t[3] += dead_letter
        t[4] += bytes_in
    if time.monotonic() - _last_flush >= 1.0:
        flush(directory)


def flush(directory: str | None = None) -> None:
    """Write this process's totals now (also called by :func:`record` once a second)."""
    global _last_flush
    directory = directory or os.environ.get(ENV)
    if not directory:
        return
    with _lock:
        _last_flush = time.monotonic()
        data = json.dumps({s: list(v) for s, v in _totals.items()})
    path = os.path.join(directory, f"{os.getpid()}.json")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:  # the driver removed the directory: the run is over
        pass


def port_error(port: int, exc: BaseException) -> Exception:
    """The one-line error (exit 2) for a ``--metrics-port`` that cannot be served on."""
    from winnow.errors import ConfigError

    return ConfigError("--metrics-port", port, "a free TCP port (1-65535) on 127.0.0.1",
                       f"it cannot be bound ({exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}); "
                       "pick another port or stop what holds it")


def check_port(port: int) -> None:
    """Raise the error of :func:`port_error` unless ``port`` can be bound on 127.0.0.1 now.

    The run binds it again later (a port taken in between still fails with the same one line).
    Binds as ``http.server`` does (``SO_REUSEADDR``), so a port in ``TIME_WAIT`` passes.
    """
    import socket

    if not 1 <= port <= 65535:
        from winnow.errors import ConfigError

        raise ConfigError("--metrics-port", port, "a TCP port number, 1-65535")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    except (OSError, OverflowError) as exc:
        raise port_error(port, exc) from exc


def read_totals(directory: str) -> dict[str, list[int]]:
    """Sum the totals of every process that wrote into ``directory``."""
    out: dict[str, list[int]] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for name in names:
        if name.startswith(".tmp-") or not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name)) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            continue
        for stage, v in data.items():
            t = out.setdefault(stage, [0, 0, 0, 0, 0])
            for i, x in enumerate(v[:5]):
                t[i] += int(x)
    return out


def format_line(stage: str, t: list[int], mb_per_s: float) -> str:
    """One progress line of a stage."""
    n_in, kept, rej, dead, _ = t
    return (f"winnow: {stage:<14} in {n_in:>12,}  kept {kept:>12,}  rejected {rej:>10,}  "
            f"dead-lettered {dead:>8,}  {mb_per_s:8.2f} MB/s")


class ProgressReporter:
    """Shows (and optionally serves) a local run's progress while it runs; a context manager.

    Args:
        interval: seconds between progress lines (the display refreshes at this rate).
        quiet: print nothing (the ``/metrics`` endpoint still works).
        stream: where lines go (default stderr).
        metrics_port: serve live counters on ``127.0.0.1:<port>/metrics`` (``None``: no server).
        run_id: the ``run_id`` label of the served metrics.
    """

    def __init__(self, interval: float = 5.0, quiet: bool = False, stream: TextIO | None = None,
                 metrics_port: int | None = None, run_id: str = "", stages: tuple[str, ...] = ()) -> None:
        self.interval, self.quiet, self.stream = interval, quiet, stream or sys.stderr
        self.metrics_port, self.run_id, self.stages = metrics_port, run_id, stages
        self.directory = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._prev: dict[str, list[int]] = {}
        self._prev_t = 0.0
        self._old_env: str | None = None
        self._drawn = 0
        self._start = self._moved_t = time.monotonic()

    def __enter__(self) -> ProgressReporter:
        self.directory = tempfile.mkdtemp(prefix="winnow-progress-")
        self._old_env = os.environ.get(ENV)
        os.environ[ENV] = self.directory
        self._prev_t = time.monotonic()
        if self.metrics_port is not None:
            from prometheus_client import CollectorRegistry, start_http_server

            reg = CollectorRegistry()
            reg.register(_LiveCollector(self))
            try:
                self._server, _ = start_http_server(self.metrics_port, addr="127.0.0.1", registry=reg)
            except (OSError, OverflowError) as exc:
                self._restore()
                raise port_error(self.metrics_port, exc) from exc
        self._thread = threading.Thread(target=self._loop, name="winnow-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        flush(self.directory)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._restore()

    def _restore(self) -> None:
        """Put ``WINNOW_PROGRESS_DIR`` back as it was and remove the run's progress directory."""
        import shutil

        if self._old_env is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = self._old_env
        shutil.rmtree(self.directory, ignore_errors=True)

    def totals(self) -> dict[str, list[int]]:
        return read_totals(self.directory)

    def tick(self) -> list[str]:
        """Lines for the stages that moved since the last tick (also printed unless quiet)."""
        now = time.monotonic()
        cur = self.totals()
        dt = max(now - self._prev_t, 1e-6)
        order = [s for s in self.stages if s in cur] + sorted(s for s in cur if s not in self.stages)
        lines = []
        for stage in order:
            t, p = cur[stage], self._prev.get(stage, [0, 0, 0, 0, 0])
            if t == p:
                continue
            lines.append(format_line(stage, t, (t[4] - p[4]) / 1e6 / dt))
        self._prev, self._prev_t = cur, now
        if lines:
            self._moved_t = now
        elif now - self._moved_t >= 0.9 * min(HEARTBEAT_S, self.interval) and not self.quiet:
            # still alive (shuffles, shard writing): a line every interval, never a longer silence
            print(f"winnow: {now - self._start:.0f} s elapsed; no stage counted records in the last "
                  f"{now - self._moved_t:.0f} s (shuffling or writing shards)", file=self.stream, flush=True)
            self._drawn = 0
        if lines and not self.quiet:
            if _isatty(self.stream):  # a terminal: redraw one block, every stage on its line
                block = [format_line(s, cur[s], 0.0) if s not in {ln.split()[1] for ln in lines} else
                         next(ln for ln in lines if ln.split()[1] == s) for s in order]
                up = f"\x1b[{self._drawn}F" if self._drawn else ""
                self.stream.write(up + "".join(f"\x1b[2K{ln}\n" for ln in block))
                self.stream.flush()
                self._drawn = len(block)
            else:
                print("\n".join(lines), file=self.stream, flush=True)
        return lines

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _LiveCollector:
    def __init__(self, reporter: ProgressReporter) -> None:
        self._r = reporter

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        from winnow.monitoring.names import PIPELINE

        fams = {i: CounterMetricFamily(n, PIPELINE[n].help, labels=["run_id", "stage"]) for i, n in LIVE.items()}
        for stage, t in self._r.totals().items():
            for i, fam in fams.items():
                fam.add_metric([self._r.run_id, stage], float(t[i]))
        return iter(fams.values())


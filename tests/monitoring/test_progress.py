"""Live progress: worker processes record per-stage counts, the driver prints and serves them."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import urllib.request

from tests.monitoring.servers import free_port
from winnow.monitoring import progress
from winnow.monitoring.progress import ProgressReporter

WORKER = """
from winnow.monitoring.progress import record, flush
for _ in range(10):
    record("normalize", 100, 90, 8, 2, 50_000)
record("exact_dedup", 90, 80, 10, 0, 40_000)
flush()
"""


def test_worker_processes_counts_reach_the_lines_and_the_endpoint():
    out = io.StringIO()
    port = free_port()
    with ProgressReporter(interval=3600, stream=out, metrics_port=port, run_id="r1",
                          stages=("read", "normalize", "exact_dedup")) as rep:
        for _ in range(2):  # two worker processes, each with its own file
            subprocess.run([sys.executable, "-c", WORKER], check=True, timeout=60)
        lines = rep.tick()
        assert [line.split()[1] for line in lines] == ["normalize", "exact_dedup"]
        assert "in        2,000  kept        1,800  rejected        160  dead-lettered       40" in lines[0], lines[0]
        assert lines == out.getvalue().splitlines()
        assert rep.tick() == []  # nothing moved: no new lines
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 'winnow_pipeline_stage_records_in_total{run_id="r1",stage="normalize"} 2000.0' in body
        assert 'winnow_pipeline_stage_records_out_total{run_id="r1",stage="exact_dedup"} 160.0' in body
        assert 'winnow_pipeline_stage_dead_letter_total{run_id="r1",stage="normalize"} 40.0' in body
        directory = rep.directory
    assert progress.ENV not in __import__("os").environ
    assert not __import__("os").path.exists(directory)


def test_quiet_prints_nothing_and_record_without_a_reporter_is_a_no_op(tmp_path):
    out = io.StringIO()
    with ProgressReporter(interval=3600, stream=out, quiet=True) as rep:
        progress.record("normalize", 5, 5, 0, 0, 10)
        progress.flush()
        assert rep.tick() and out.getvalue() == ""
    progress.record("normalize", 5, 5, 0, 0, 10)  # no directory: nothing written, no error


def test_lines_come_every_interval_while_work_goes_on():
    out = io.StringIO()
    with ProgressReporter(interval=0.2, stream=out, stages=("normalize",)):
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            progress.record("normalize", 10, 10, 0, 0, 1000)
            progress.flush()
            time.sleep(0.05)
    assert len(out.getvalue().splitlines()) >= 4, out.getvalue()


def test_a_line_says_the_run_still_works_when_no_stage_moves(monkeypatch):
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.3)
    out = io.StringIO()
    with ProgressReporter(interval=0.2, stream=out):
        time.sleep(1.0)
    assert "no stage counted records in the last" in out.getvalue(), out.getvalue()


def test_no_silence_longer_than_the_interval_while_nothing_moves():
    """With the default heartbeat (10 s), a 0.2 s interval still prints a line about every tick
    while no stage moves, so a run is never silent for longer than its progress interval."""
    out = io.StringIO()
    with ProgressReporter(interval=0.2, stream=out):
        time.sleep(1.2)
    lines = [ln for ln in out.getvalue().splitlines() if "no stage counted records" in ln]
    assert len(lines) >= 3, out.getvalue()

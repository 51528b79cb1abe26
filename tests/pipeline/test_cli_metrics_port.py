"""``--metrics-port`` mistakes (a port out of range, a port another socket holds) are usage
errors: exit 2, one ``winnow: error:`` line, no traceback, and no output directory prepared."""

from __future__ import annotations

import socket

import pytest

from tests.pipeline.test_cli import cli, corpus
from winnow.errors import ConfigError
from winnow.monitoring.progress import ENV, ProgressReporter


def _one_error_line(res, fragment):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    err = [line for line in res.stderr.splitlines() if line.startswith("winnow: error:")]
    assert len(err) == 1 and fragment in err[0], res.stderr
    return err[0]


@pytest.mark.parametrize("port", ["99999", "0", "-1", "65536"])
def test_a_port_out_of_range_is_one_line_before_any_output(tmp_path, port):
    out = tmp_path / "out"
    res = cli("run", "--input", corpus(tmp_path), "--output", str(out), "--stages", "normalize",
              "--metrics-port", port, "--quiet")
    _one_error_line(res, f"--metrics-port={int(port)}")
    assert not out.exists()


def test_a_taken_port_is_one_line_before_any_output(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = tmp_path / "out"
        res = cli("run", "--input", corpus(tmp_path), "--output", str(out), "--stages", "normalize",
                  "--metrics-port", str(port), "--quiet")
    line = _one_error_line(res, f"--metrics-port={port}")
    assert "Address already in use" in line and "pick another port" in line
    assert not out.exists()


def test_the_reporter_turns_a_bind_failure_into_the_same_error_and_cleans_up(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        rep = ProgressReporter(interval=3600, quiet=True, metrics_port=port)
        with pytest.raises(ConfigError, match=f"--metrics-port={port}"):
            with rep:
                pass
    assert ENV not in __import__("os").environ
    assert not __import__("os").path.exists(rep.directory)
    with pytest.raises(ConfigError, match="--metrics-port=99999"):
        with ProgressReporter(interval=3600, quiet=True, metrics_port=99999):
            pass


def test_a_free_port_still_runs(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    res = cli("run", "--input", corpus(tmp_path), "--output", str(out), "--stages", "normalize",
              "--metrics-port", str(port), "--quiet")
    assert res.returncode == 0, res.stderr
    assert (out / "index.json").exists()

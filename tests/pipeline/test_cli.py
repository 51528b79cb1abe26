"""The CLI: one-line errors with exit code 2, a working run, inspect and dry run."""

import gzip
import json
import subprocess
import sys

import pytest

from winnow.pipeline.cli import main


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "winnow.pipeline.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def corpus(tmp_path, n=200):
    p = tmp_path / "in.jsonl.gz"
    lines = [json.dumps({"id": f"d{i:04d}", "text": f"text {i % 150}"}) for i in range(n)]
    p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    return str(p)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "--input", "/no/such/*.jsonl", "--output", "OUT"], "matches no file"),
        (["run", "--output", "OUT"], "--input"),
        (["run", "--input", "IN", "--output", "OUT", "--set", "sink.shard_bytes=huge"], "sink.shard_bytes='huge'"),
        (["run", "--input", "IN", "--output", "OUT", "--stages", "normalize,bogus"], "stages='bogus'"),
        (["run", "--input", "IN", "--output", "OUT", "--workers", "0"], "--workers=0"),
        (["run", "--input", "IN", "--output", "OUT", "--", "--runner=DaskRunner"], "loses data"),
        (["run", "--config", "/no/such.yaml"], "readable YAML"),
        (["inspect", "/no/such/run"], "does not exist"),
        (["run", "--input", "IN", "--output", "OUT", "--set", "sink.shard_bytes=.inf"], "byte size"),
        (["run", "--input", "IN", "--output", "OUT", "--", "--runner=NoSuchRunner"], "--runner='NoSuchRunner'"),
        (["run", "--input", "IN", "--output", "IN/sub"], "cannot be prepared"),
        (["inspect", "IN"], "cannot be read"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(tmp_path, args, fragment):
    src = corpus(tmp_path)
    args = [a.replace("IN", src).replace("OUT", str(tmp_path / "out")) if a in ("IN", "OUT", "IN/sub") else a for a in args]
    res = cli(*args)
    assert res.returncode == 2, res.stderr
    err = [l for l in res.stderr.splitlines() if l.startswith("winnow: error:")]
    assert len(err) == 1 and fragment in err[0], res.stderr
    assert "Traceback" not in res.stderr


def test_argparse_usage_error_is_exit_2():
    res = cli("run", "--workers", "many")
    assert res.returncode == 2 and "invalid int value" in res.stderr


def test_run_then_refuse_overwrite_then_inspect(tmp_path, capsys):
    src, out = corpus(tmp_path), str(tmp_path / "out")
    # The parsing and dedup stages only: the quality rules would drop these short synthetic texts.
    assert main(["run", "--input", src, "--output", out, "--set", "sink.min_shards=2",
                 "--stages", "normalize,exact_dedup"]) == 0
    printed = capsys.readouterr().out
    assert "read 200  kept 150  rejected 50  dead-lettered 0  (balanced)" in printed
    assert main(["run", "--input", src, "--output", out]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["run", "--input", src, "--output", out, "--overwrite", "--stages", "normalize"]) == 0
    assert "kept 200" in capsys.readouterr().out
    assert main(["inspect", out, "--rows", "2"]) == 0
    text = capsys.readouterr().out
    assert "1 shard(s), 200 rows" in text and "normalize" in text and "balance: ok" in text
    assert text.count(" text ") >= 2  # two rows shown


def test_inspect_reports_a_corrupt_shard_without_a_traceback(tmp_path, capsys):
    src, out = corpus(tmp_path), tmp_path / "out"
    assert main(["run", "--input", src, "--output", str(out)]) == 0
    capsys.readouterr()
    shard = next((out / "shards").glob("*.arrow"))
    shard.write_bytes(b"not arrow")
    assert main(["inspect", str(out)]) == 2
    assert "unreadable" in capsys.readouterr().err


def test_overwrite_clears_temp_files_of_a_killed_run(tmp_path, capsys):
    src, out = corpus(tmp_path), tmp_path / "out"
    assert main(["run", "--input", src, "--output", str(out)]) == 0
    (out / ".tmp-0123-stats.json").write_text("{")
    assert main(["run", "--input", src, "--output", str(out), "--overwrite"]) == 0
    assert not list(out.glob(".tmp-*"))


def test_output_with_foreign_files_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["run", "--input", corpus(tmp_path), "--output", str(out), "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"

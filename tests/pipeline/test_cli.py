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
        (["run", "--input", "IN", "--output", "OUT", "--stages", ""], "--stages none"),
        (["run", "--input", "IN", "--output", "OUT", "--", "--temp_locaton=/tmp"], "--temp_locaton"),
        (["run", "--input", "IN", "--output", "OUT", "--stages", " , "], "--stages none"),
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


def test_stages_none_reads_and_writes_shards_with_no_stage(tmp_path, capsys):
    src, out = corpus(tmp_path), str(tmp_path / "out")
    assert main(["run", "--input", src, "--output", out, "--stages", "none"]) == 0
    assert "read 200  kept 200  rejected 0  dead-lettered 0  (balanced)" in capsys.readouterr().out


def test_inspect_names_an_interrupted_run(tmp_path, capsys):
    from winnow.pipeline.runner import INCOMPLETE_MARKER

    out = tmp_path / "out"
    out.mkdir()
    (out / INCOMPLETE_MARKER).write_text("interrupted\n")
    assert main(["inspect", str(out)]) == 2
    err = capsys.readouterr().err
    assert "interrupted run" in err and "Traceback" not in err


def test_inspect_reports_a_corrupt_shard_without_a_traceback(tmp_path, capsys):
    src, out = corpus(tmp_path), tmp_path / "out"
    assert main(["run", "--input", src, "--output", str(out), "--stages", "normalize"]) == 0
    capsys.readouterr()
    shard = next((out / "shards").glob("*.arrow"))
    shard.write_bytes(b"not arrow")
    assert main(["inspect", str(out)]) == 2
    assert "unreadable" in capsys.readouterr().err


def test_overwrite_clears_temp_files_of_a_killed_run(tmp_path, capsys):
    src, out = corpus(tmp_path), tmp_path / "out"
    assert main(["run", "--input", src, "--output", str(out), "--stages", "normalize"]) == 0
    (out / ".tmp-0123-stats.json").write_text("{")
    assert main(["run", "--input", src, "--output", str(out), "--overwrite", "--stages", "normalize"]) == 0
    assert not list(out.glob(".tmp-*"))


def test_output_with_foreign_files_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["run", "--input", corpus(tmp_path), "--output", str(out), "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"


# --- What a new user hit (issue 15, section 4) ---------------------------------------------


def test_all_dead_lettered_input_writes_everything_then_exits_1_with_one_line(tmp_path, capsys):
    src, out = tmp_path / "bad.jsonl", tmp_path / "out"
    src.write_text("".join(f'{{"id": "d{i}", "text": broken\n' for i in range(150)) + '{"id": "ok", "text": "fine"}\n')
    rc = main(["run", "--input", str(src), "--output", str(out), "--stages", "normalize"])
    cap = capsys.readouterr()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["dead_letter"] == 150 and stats["kept"] == 1 and stats["balanced"], stats
    assert rc == 1, cap.err
    failed = [l for l in cap.err.splitlines() if l.startswith("winnow: failed:")]
    assert len(failed) == 1, cap.err
    assert "dead letters 150 of 151 read (99.3%) exceed --max-dead-letter-fraction=0.5, most in stage read" in failed[0]
    assert (out / "index.json").exists() and (out / "report.html").exists() and (out / "dead_letter").is_dir()
    # A higher limit lets the same run pass.
    assert main(["run", "--input", str(src), "--output", str(out), "--overwrite", "--stages", "normalize",
                 "--max-dead-letter-fraction", "1"]) == 0


def test_wrong_text_field_keeps_nothing_and_exits_1_naming_the_field(tmp_path, capsys):
    src, out = corpus(tmp_path), tmp_path / "out"
    rc = main(["run", "--input", src, "--output", str(out), "--stages", "normalize", "--set", "reader.text_field=body"])
    cap = capsys.readouterr()
    assert rc == 1 and json.loads((out / "stats.json").read_text())["read"] == 200
    failed = [l for l in cap.err.splitlines() if l.startswith("winnow: failed:")]
    assert len(failed) == 1 and "no record was kept of 200 read: stage normalize kept none of 200" in failed[0], cap.err
    assert "reader.text_field" in failed[0] and (out / "index.json").exists()
    assert main(["run", "--input", src, "--output", str(out), "--overwrite", "--stages", "normalize",
                 "--set", "reader.text_field=body", "--allow-empty-output"]) == 0


def test_per_stage_reject_fraction_limit(tmp_path, capsys):
    src, out = corpus(tmp_path), str(tmp_path / "out")  # exact_dedup rejects 50 of 200 (25%)
    args = ["run", "--input", src, "--output", out, "--stages", "normalize,exact_dedup"]
    assert main([*args, "--max-reject-fraction", "exact_dedup=0.2"]) == 1
    failed = [l for l in capsys.readouterr().err.splitlines() if l.startswith("winnow: failed:")]
    assert len(failed) == 1 and "stage exact_dedup rejected 50 of 200 (25.0%)" in failed[0], failed
    assert main([*args, "--overwrite", "--max-reject-fraction", "exact_dedup=0.3"]) == 0
    capsys.readouterr()
    assert main([*args, "--overwrite", "--max-reject-fraction", "quality=0.3"]) == 2
    assert "--max-reject-fraction='quality'" in capsys.readouterr().err


def test_max_reject_fraction_needs_stage_equals_fraction():
    res = cli("run", "--input", "x", "--output", "y", "--max-reject-fraction", "exact_dedup")
    assert res.returncode == 2 and "STAGE=FRACTION" in res.stderr


@pytest.mark.parametrize("name, data", [("empty.jsonl", b""), ("empty.jsonl.gz", gzip.compress(b"", mtime=0))])
def test_empty_input_warns_and_exits_non_zero(tmp_path, name, data):
    src = tmp_path / name
    src.write_bytes(data)
    res = cli("run", "--input", str(src), "--output", str(tmp_path / "out"), "--stages", "normalize")
    assert f"winnow: warning: input {src} is empty" in res.stderr, res.stderr
    assert res.returncode == 1 and "winnow: failed: nothing was read" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_one_empty_input_among_others_warns_but_passes(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    res = cli("run", "--input", corpus(tmp_path), str(empty), "--output", str(tmp_path / "out"), "--stages", "normalize")
    assert res.returncode == 0 and f"input {empty} is empty" in res.stderr, res.stderr


def test_run_help_lists_the_stage_names():
    from winnow.pipeline.stages.registry import STAGES

    res = cli("run", "--help")
    assert res.returncode == 0
    for name in STAGES:
        assert f"\n  {name}" in res.stdout, name
    assert "--max-dead-letter-fraction" in res.stdout and "--max-reject-fraction" in res.stdout


@pytest.mark.slow
def test_ctrl_c_prints_one_line_stops_workers_and_marks_the_output_incomplete(tmp_path):
    import signal

    import psutil

    p = tmp_path / "big.jsonl"
    with p.open("w") as fh:
        for i in range(300_000):
            fh.write(json.dumps({"id": f"d{i}", "text": f"some text number {i} " * 8}) + "\n")
    out = tmp_path / "out"
    log = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "winnow.pipeline.cli", "run", "--input", str(p), "--output", str(out),
                             "--stages", "normalize,exact_dedup", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=log, text=True,
                            # as from a terminal (a shell's background job would inherit SIGINT ignored)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    me = psutil.Process(proc.pid)
    tree = []
    try:
        _interrupt_and_check(proc, me, out, tmp_path / "stderr.txt", tree)
    finally:
        for k in tree if proc.poll() is None else [k for k in tree if k.is_running()]:
            k.kill()


def _interrupt_and_check(proc, me, out, stderr_path, tree):
    import signal
    import time

    import psutil

    deadline = time.monotonic() + 120
    workers = []
    while time.monotonic() < deadline and len(workers) < 2:  # both worker processes are up: the run is running
        time.sleep(0.5)
        tree[:] = [me, *me.children(recursive=True)]
        workers = [k for k in tree[1:] if "sdk_worker_main" in " ".join(k.cmdline()) and k.name().startswith("python")]
    assert len(workers) == 2, "the worker processes did not start"
    time.sleep(3)
    assert proc.poll() is None, stderr_path.read_text()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    stderr = stderr_path.read_text()
    assert proc.returncode == 130, stderr
    lines = [l for l in stderr.splitlines() if l.strip()]
    after = lines[next(i for i, l in enumerate(lines) if "interrupted" in l):]
    assert len(after) == 1 and after[0].startswith("winnow: interrupted; workers stopped;"), stderr
    assert "Traceback" not in stderr, stderr
    assert not (out / "index.json").exists()
    assert "interrupted" in (out / "INCOMPLETE").read_text()
    time.sleep(0.5)
    assert not [k for k in tree[1:] if k.is_running() and k.status() != psutil.STATUS_ZOMBIE], "workers still running"
    # --overwrite replaces the interrupted run, the marker included.
    src = corpus(out.parent)
    assert main(["run", "--input", src, "--output", str(out), "--overwrite", "--stages", "normalize"]) == 0
    assert not (out / "INCOMPLETE").exists() and (out / "index.json").exists()


def test_a_failed_push_is_one_line_exit_2(tmp_path):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = cli("run", "--input", corpus(tmp_path), "--output", str(tmp_path / "out"), "--stages", "normalize",
              "--pushgateway", f"127.0.0.1:{port}")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    err = [l for l in res.stderr.splitlines() if l.startswith("winnow: error:")]
    assert len(err) == 1 and f"--pushgateway 127.0.0.1:{port}: the push failed" in err[0], res.stderr
    assert (tmp_path / "out" / "index.json").exists()


def test_inspect_shows_inputs_tokenizer_and_the_packed_output_where_it_is(tmp_path, capsys):
    import pydoc_data.topics

    # Real prose (the interpreter's documentation), enough for a small tokenizer.
    docs = [t for _, t in sorted(pydoc_data.topics.topics.items()) if len(t) > 400][:120]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(docs)))
    out = tmp_path / "out"
    assert main(["run", "--input", str(src), "--output", str(out), "--stages", "normalize,tokenizer,encode",
                 "--set", "tokenizer.vocab_size=500", "--set", "encode.pack_length=128", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    manifest = json.loads((out / "index.json").read_text())
    tok = manifest["tokenizer"]
    packed = json.loads((out / "packed" / "index.json").read_text())
    # the inputs, from config.yaml, with the count read
    assert f"inputs: 1 path(s), reader format auto, text field 'text', {len(docs):,} records read" in lines
    assert f"  {src}" in lines
    # the tokenizer: model path under OUT, vocabulary size, special ids, all as the run wrote them
    tok_line = next(l for l in lines if l.startswith("tokenizer: "))
    assert f"tokenizer: {out}/{tok['model']} (sentencepiece_bpe, vocab {tok['vocab_size']:,}" in tok_line
    assert tok["vocab_size"] == 500
    assert f"unk {tok['unk_id']}, bos {tok['bos_id']}, eos {tok['eos_id']}" in tok_line
    # the packed output, with the paths where its shards are (OUT/packed/shards/...)
    packed_line = next(l for l in lines if l.startswith("packed: "))
    assert packed_line.startswith(f"packed: packed/index.json, {len(packed['shards'])} shard(s), "
                                  f"{sum(s['rows'] for s in packed['shards']):,} rows of 128 tokens")
    for s in packed["shards"]:
        assert s["path"].startswith("shards/")
        shown = [l for l in lines if l.startswith(f"  packed/{s['path']}  ")]
        assert len(shown) == 1 and (out / "packed" / s["path"]).is_file()
    assert not [l for l in lines if l.strip().startswith("shards/") and "128" in l]
    # the main shards are listed where they are, and every stage with its time
    for s in manifest["shards"]:
        assert any(l.startswith(f"  {s['path']}  {s['rows']:,} rows") for l in lines) and (out / s["path"]).is_file()
    stage_lines = [l for l in lines if l.startswith("  normalize ") or l.startswith("  encode ")]
    assert len(stage_lines) == 2 and all("CPU s" in l for l in stage_lines)

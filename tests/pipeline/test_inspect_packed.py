"""``winnow inspect`` of a packed output (OUT/packed) and of a manifest listing a missing shard."""

from __future__ import annotations

import json
import os
import posixpath

import pytest

from tests.pipeline.test_cli import cli
from winnow.format import Manifest
from winnow.pipeline.cli import main


@pytest.fixture(scope="module")
def packed_run(tmp_path_factory):
    import pydoc_data.topics

    tmp = tmp_path_factory.mktemp("packed")
    docs = [t for _, t in sorted(pydoc_data.topics.topics.items()) if len(t) > 400][:120]
    src = tmp / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(docs)))
    out = tmp / "out"
    assert main(["run", "--input", str(src), "--output", str(out), "--stages", "normalize,tokenizer,encode",
                 "--set", "tokenizer.vocab_size=500", "--set", "encode.pack_length=128", "--quiet"]) == 0
    return out


def test_the_packed_manifest_names_the_parent_runs_tokenizer(packed_run):
    out = packed_run
    tok = json.loads((out / "index.json").read_text())["tokenizer"]
    entry = json.loads((out / "packed" / "index.json").read_text())["tokenizer"]
    assert entry["parent"] == ".." and entry["length"] == 128
    assert entry["model"] == "../" + tok["model"] and entry["vocab"] == "../" + tok["vocab"]
    assert os.path.isfile(posixpath.normpath(str(out / "packed" / entry["model"])))
    for key in ("sha256", "vocab_size", "eos_id", "bos_id", "unk_id", "dtype", "type"):
        assert entry[key] == tok[key], key
    # still a manifest the loader's parser reads
    assert Manifest.loads((out / "packed" / "index.json").read_text()).tokenizer["eos_id"] == tok["eos_id"]


def _inspect(path, capsys, rows=3):
    assert main(["inspect", str(path), "--rows", str(rows)]) == 0
    return capsys.readouterr().out.splitlines()


def test_inspect_of_a_packed_output_says_what_it_is(packed_run, capsys):
    out = packed_run
    packed = json.loads((out / "packed" / "index.json").read_text())
    tok = json.loads((out / "index.json").read_text())["tokenizer"]
    lines = _inspect(out / "packed", capsys, rows=5)
    text = "\n".join(lines)
    rows = sum(s["rows"] for s in packed["shards"])
    assert lines[0].startswith(f"{out / 'packed'}: packed token sequences of 128 tokens ({tok['dtype']} ids), {rows:,} rows")
    c = packed["counts"]
    assert lines[1].startswith(f"packed from the run {out} (")
    assert f"{c['documents']:,} documents, {c['tokens']:,} tokens" in lines[1]
    assert f"separator id {tok['eos_id']}" in text
    tok_line = next(line for line in lines if line.startswith("tokenizer"))
    assert tok_line.startswith(f"tokenizer (the parent run's): {out}/{tok['model']} (sentencepiece_bpe, vocab {tok['vocab_size']:,}")
    assert f"eos {tok['eos_id']}" in tok_line
    # nothing of a plain run's summary that does not apply
    assert "config.yaml missing" not in text and "trained no tokenizer" not in text and "read " not in lines[1]
    shown = lines[lines.index("rows:") + 1:]
    assert len(shown) == 5
    ids = [line.split()[0] for line in shown]
    assert len(set(ids)) == 5 and all(i.startswith("pack-") and len(i) > 16 for i in ids)
    assert all("128 tokens" in line and "''" not in line for line in shown)


def test_inspect_of_an_old_packed_manifest_reads_the_parent(packed_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(packed_run, out)
    idx = out / "packed" / "index.json"
    obj = json.loads(idx.read_text())
    obj["tokenizer"] = None  # as written before the packed manifest named the tokenizer
    idx.write_text(json.dumps(obj))
    tok = json.loads((out / "index.json").read_text())["tokenizer"]
    lines = _inspect(out / "packed", capsys)
    text = "\n".join(lines)
    assert "packed token sequences of 128 tokens" in lines[0]
    assert f"separator id {tok['eos_id']}" in text
    assert f"tokenizer (the parent run's): {out}/{tok['model']}" in text


def test_inspect_of_the_run_shows_token_counts_and_full_ids(packed_run, capsys):
    lines = _inspect(packed_run, capsys)
    shown = lines[lines.index("rows:") + 1:]
    assert shown and all(" tokens]" in line for line in shown)


def test_a_listed_shard_that_does_not_exist_is_one_line_exit_2(packed_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(packed_run, out)
    manifest = json.loads((out / "index.json").read_text())
    gone = manifest["shards"][-1]["path"]
    (out / gone).unlink()
    res = cli("inspect", str(out))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    err = [line for line in res.stderr.splitlines() if line.startswith("winnow: error:")]
    assert len(err) == 1 and f"{out}/{gone} is listed in" in err[0] and "does not exist" in err[0], res.stderr
    # the same for the packed output's own shards
    packed = json.loads((out / "packed" / "index.json").read_text())
    (out / "packed" / packed["shards"][0]["path"]).unlink()
    res = cli("inspect", str(out / "packed"))
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr, res.stderr

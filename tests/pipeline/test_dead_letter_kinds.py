"""Dead letters counted by error kind: the bounded combiner in build.py, the report's table, and
one real run where a truncated stream and per-line errors both show.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from winnow.pipeline import build
from winnow.pipeline.build import DEAD_KINDS_KEY, _DeadKinds, dead_letter_file, dead_letter_kind
from winnow.pipeline.configure import load_config
from winnow.pipeline.report import render_report
from winnow.pipeline.runner import run


def _dl(source: str, error: str, stage: str = "read") -> dict:
    return {"source": source, "error": error, "reject_stage": stage}


def test_kind_drops_the_specifics() -> None:
    a = dead_letter_kind("malformed JSON at column 12: Expecting value; expected one JSON object per line")
    b = dead_letter_kind("malformed JSON at column 3: Expecting value; expected one JSON object per line")
    assert a == b == "malformed JSON at column N: Expecting value"
    assert dead_letter_kind("member '../x.jpg' escapes") == dead_letter_kind("member '/abs/y.jpg' escapes")
    p1 = dead_letter_kind("/data/a.parquet has no column 'text' (columns: body); set reader.text_field")
    p2 = dead_letter_kind("s3://b/c.parquet has no column 'text' (columns: x, y); set reader.text_field")
    assert p1 == p2 and "has no column" in p1
    assert dead_letter_kind("gzip stream is truncated after line 40 (Compressed file ended)") != a
    assert dead_letter_kind(None) == dead_letter_kind("") == "(no error text)"


def test_file_of_a_source() -> None:
    assert dead_letter_file("/d/a.jsonl.gz:12") == "/d/a.jsonl.gz"
    assert dead_letter_file("/d/b.tar#dir/0001") == "/d/b.tar"
    assert dead_letter_file("s3://x/c.tar.gz#k") == "s3://x/c.tar.gz"
    assert dead_letter_file("/d/img.png") == "/d/img.png"


def _combine(parts: list[list[dict]]) -> dict:
    fn = _DeadKinds()
    acc = fn.create_accumulator()
    for rows in parts:
        acc = fn.add_input(acc, _DeadKinds.from_rows(rows))
    return fn.extract_output(acc)


def _rows(n_kinds: int, per_kind: int, n_files: int) -> list[dict]:
    return [_dl(f"/d/f{(k * 7 + i) % n_files}.jsonl:{i + 1}", f"problem {chr(65 + k % 26)}{'x' * (k // 26)} at 3")
            for k in range(n_kinds) for i in range(per_kind)]


def test_combine_is_exact_and_independent_of_the_split() -> None:
    rows = _rows(20, 9, 30) + [_dl("/d/z.jsonl.gz:5", "gzip stream is truncated after line 4 (x)")]
    whole = _combine([rows])
    for seed in range(3):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        parts = [shuffled[i : i + 17] for i in range(0, len(shuffled), 17)]
        assert _combine(parts) == whole
    assert sum(k["count"] for k in whole["kinds"]) == len(rows) and whole["other"] == 0
    assert whole["kinds"][0]["file_level"] and whole["kinds"][0]["kind"] == "gzip stream is truncated after line N"
    k = next(k for k in whole["kinds"] if k["kind"] == "problem A at N")
    assert k["count"] == 9 and len(k["files"]) == build._FILES_PER_KIND and k["more_files"]
    assert sum(n for _, n in k["files"]) <= 9


def test_kinds_are_bounded_and_file_level_kinds_are_never_crowded_out() -> None:
    rows = _rows(3 * build._KINDS_MAX, 2, 5)
    rows += [_dl(f"/d/t{i}.jsonl.gz:{i}", f"zstd stream is truncated after line {i} (cut)") for i in range(3)]
    rows += [_dl("/d/p.parquet:1", "/d/p.parquet has no column 'text' (columns: b); every row of the file is dead-lettered")]
    parts = [rows[i : i + 50] for i in range(0, len(rows), 50)]
    out = _combine(parts)
    assert out == _combine(parts[::-1])
    listed = [k for k in out["kinds"] if not k["file_level"]]
    assert len(listed) == build._KINDS_MAX
    assert sum(k["count"] for k in out["kinds"]) + out["other"] == len(rows)
    file_level = [k for k in out["kinds"] if k["file_level"]]
    assert [k["count"] for k in file_level] == [3, 1]
    assert out["kinds"][:2] == file_level


def test_report_lists_every_kind_and_links_from_the_examples() -> None:
    kinds = _combine([[_dl("/d/a.jsonl:3", "malformed JSON at column 4: Expecting value; expected one JSON object per line"),
                       _dl("/d/a.jsonl:9", "malformed JSON at column 1: Expecting value; expected one JSON object per line"),
                       _dl("/d/c.jsonl.gz:7", "gzip stream is truncated after line 6 (EOF); re-download <it>")]])
    stats = {"read": 10, "kept": 7, "rejected": 0, "dead_letter": 3,
             "stages": [{"name": "normalize", "in": 7, "out": 7, "rejected": {}, "dead_letter": 0}],
             "stage_stats": {DEAD_KINDS_KEY: kinds}}
    examples = [{"stage": "read", "reason": "dead_letter", "id": "x", "source": "/d/a.jsonl:3", "error": "malformed"}]
    page = render_report(stats, examples, {})
    assert 'id="dead-letter-kinds"' in page and "Dead letters by error kind" in page
    table = page.split('id="dead-letter-kinds"')[1].split("</section>")[0]
    assert table.index("gzip stream is truncated") < table.index("malformed JSON at column N: Expecting value")
    assert "file-level" in table and "/d/c.jsonl.gz" in table and "&lt;it&gt;" in table  # escaped
    assert 'href="#dead-letter-kinds"' in page


def test_report_without_dead_letters_has_no_table() -> None:
    stats = {"read": 1, "kept": 1, "stage_stats": {DEAD_KINDS_KEY: {"kinds": [], "other": 0}}}
    assert "dead-letter-kinds" not in render_report(stats, [], {})


def test_run_shows_the_truncated_stream_and_the_parquet_rows(tmp_path: Path) -> None:
    good = [json.dumps({"text": f"a good line number {i} with words"}) for i in range(20)]
    (tmp_path / "a.jsonl").write_text("\n".join(good[:10] + ["{broken", "{also broken"]) + "\n")
    cut = gzip.compress(("\n".join(good) + "\n").encode() * 200)
    (tmp_path / "b.jsonl.gz").write_bytes(cut[: len(cut) // 2])
    pq.write_table(pa.table({"body": ["x"] * 40}), tmp_path / "c.parquet")
    out = tmp_path / "out"
    cfg = load_config(input=[str(tmp_path / n) for n in ("a.jsonl", "b.jsonl.gz", "c.parquet")], output=str(out),
                      overrides=["stages=[normalize]"])
    run(cfg)
    stats = json.loads((out / "stats.json").read_text())
    kinds = stats["stage_stats"][DEAD_KINDS_KEY]["kinds"]
    assert sum(k["count"] for k in kinds) == stats["dead_letter"] == 2 + 1 + 40
    by_kind = {k["kind"]: k for k in kinds}
    assert by_kind["gzip stream is truncated after line N"]["file_level"]
    assert by_kind["<file> has no column \u2026"]["count"] == 40
    page = (out / "report.html").read_text()
    assert "gzip stream is truncated after line N" in page and "has no column" in page

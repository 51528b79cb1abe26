"""Readers account for every input record: Parquet schema problems per row, JSON documents
(arrays, pretty-printed objects) as records, tar OS-metadata members skipped, blank captions.

Every input is written at test time under tmp_path.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.pipeline.readers import parquet as parquet_reader
from winnow.pipeline.readers.webdataset import is_os_metadata

from .test_readers import TarBuilder, cfg, image_bytes, read_path

# ---------------------------------------------------------------------------------------------
# Parquet: a schema problem dead-letters every row, counted from the footer


def test_parquet_wrong_column_dead_letters_each_row(tmp_path: Path) -> None:
    n = 10_000
    path = tmp_path / "big_wrongcol.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(n)], "body": ["x"] * n}), path, row_group_size=1000)
    records, dead = read_path(path)
    assert records == [] and len(dead) == n
    assert [d["source"] for d in dead[:2]] == [f"{path}:1", f"{path}:2"] and dead[-1]["source"] == f"{path}:{n}"
    assert len({d["id"] for d in dead}) == n  # distinct dead letters, not one repeated
    assert "no column 'text'" in dead[0]["error"] and "10,000 rows" in dead[0]["error"]
    assert all(d["text"] is None for d in dead)  # no payload: the row is still in the file


@pytest.mark.parametrize(
    "column, type_name",
    [
        (pa.array([["a", "b"], ["c"]]), "list"),
        (pa.array([{"x": "y"}, {"x": "z"}]), "struct"),
        (pa.array([1, 2], pa.int32()), "int32"),
    ],
)
def test_parquet_text_column_of_another_type_dead_letters_each_row(tmp_path: Path, column: pa.Array, type_name: str) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": column}), path)
    records, dead = read_path(path)
    assert records == [] and [d["source"] for d in dead] == [f"{path}:1", f"{path}:2"]
    assert type_name in dead[0]["error"] and "expected a string column" in dead[0]["error"]


def test_parquet_schema_problem_reads_no_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-row dead letters come from the footer's row count: no row data is read."""
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": ["a"] * 50}), path)

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("rows were read")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", refuse)
    records, dead = read_path(path)
    assert records == [] and len(dead) == 50


def test_parquet_corrupt_row_group_dead_letters_the_rows_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(30)]}), path, row_group_size=10)
    real = pq.ParquetFile.iter_batches

    def first_batch_then_fail(self: pq.ParquetFile, *a: object, **k: object):  # type: ignore[no-untyped-def]
        k["batch_size"] = 10
        it = real(self, *a, **k)
        yield next(it)
        raise OSError("corrupt page")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", first_batch_then_fail)
    records, dead = read_path(path)
    assert len(records) == 10 and len(dead) == 20
    assert [d["source"] for d in dead] == [f"{path}:{i}" for i in range(11, 31)]
    assert "cannot read rows from 11 on" in dead[0]["error"] and "corrupt page" in dead[0]["error"]
    assert "row skipped" in dead[1]["error"]


def test_parquet_reader_module_documents_the_payload() -> None:
    assert "no payload" in (parquet_reader.__doc__ or "")


# ---------------------------------------------------------------------------------------------
# JSON documents


def _docs(n: int) -> list[dict]:
    return [{"id": f"d{i}", "text": f"document number {i}", "n": i} for i in range(n)]


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("name", ["data.json", "data.json.gz", "data.jsonl"])
def test_json_array_is_read_as_records(tmp_path: Path, indent: int | None, name: str) -> None:
    docs = _docs(25)
    data = json.dumps(docs, indent=indent).encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    records, dead = read_path(path)
    assert dead == []
    assert [r["id"] for r in records] == [d["id"] for d in docs]
    assert [r["text"] for r in records] == [d["text"] for d in docs]
    assert json.loads(records[3]["meta"]) == {"n": 3}
    if indent is None:
        assert {r["source"] for r in records} == {f"{path}:1"}
    else:  # each element's source is the line where it starts
        lines = data.decode().split("\n")
        for r in records[:5]:
            line = int(r["source"].rsplit(":", 1)[1])
            assert lines[line - 1].strip() == "{" and f'"{r["id"]}"' in lines[line]


def test_pretty_printed_objects_one_after_another(tmp_path: Path) -> None:
    docs = _docs(4)
    path = tmp_path / "pretty.json"
    path.write_text("\n".join(json.dumps(d, indent=2) for d in docs) + "\n")
    records, dead = read_path(path)
    assert dead == [] and [r["id"] for r in records] == ["d0", "d1", "d2", "d3"]
    assert [r["source"] for r in records] == [f"{path}:{1 + 5 * i}" for i in range(4)]


def test_json_array_elements_that_are_not_objects_are_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "mixed.json"
    path.write_text('[{"text": "a"}, 42, "s", [1], {"text": 5}, {"text": "b"}]')
    records, dead = read_path(path)
    assert [r["text"] for r in records] == ["a", "b"]
    assert len(dead) == 4
    assert "array element is a number (42)" in dead[0]["error"]
    assert "array element is an array" in dead[2]["error"]
    assert "'text' must be a string" in dead[3]["error"]


def test_json_array_in_small_chunks_and_over_long_element(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Elements cut across read chunks parse whole; an element over max_record_bytes is one
    dead letter and the rest goes on."""
    from winnow.pipeline.readers import jsonl

    monkeypatch.setattr(jsonl, "_CHUNK", 7)
    monkeypatch.setattr(jsonl, "_PEEK", 5)
    docs = [{"text": "x" * 40, "v": 12345}, {"text": "y" * 400}, {"text": "z", "v": -1.5e3}]
    path = tmp_path / "chunks.json"
    path.write_text(json.dumps(docs, indent=1))
    records, dead = read_path(path, cfg(max_record_bytes=200))
    assert [r["text"] for r in records] == ["x" * 40, "z"]
    assert json.loads(records[1]["meta"]) == {"v": -1500.0}
    assert len(dead) == 1 and "over reader.max_record_bytes=200" in dead[0]["error"]


@pytest.mark.parametrize(
    "text, n_records, needle",
    [
        ('[{"text": "a"}, {"text": "b"} {"text": "c"}]' + " " * 100, 2, "expected ',' or ']'"),
        ('[{"text": "a"}, {"text": "b", oops}, {"text": "c"}]' + " " * 100, 1, "Expecting property name"),
        ('[{"text": "a"}, {"text": "b"}', 2, "not closed"),
        ('[{"text": "a"}, {"text": "b', 1, "Unterminated string"),
    ],
)
def test_malformed_json_document_ends_the_file_with_one_dead_letter(tmp_path: Path, text: str, n_records: int,
                                                                     needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    records, dead = read_path(path)
    assert len(records) == n_records and len(dead) == 1
    assert "malformed JSON in the document" in dead[0]["error"] and needle in dead[0]["error"]
    assert f"the {n_records:,} elements before it were read" in dead[0]["error"]


def test_truncated_gzip_json_array(tmp_path: Path) -> None:
    data = gzip.compress(json.dumps(_docs(2000)).encode())
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[: len(data) // 2])
    records, dead = read_path(path)
    assert 0 < len(records) < 2000 and len(dead) == 1
    assert "truncated" in dead[0]["error"]


def test_jsonl_is_still_read_line_by_line(tmp_path: Path) -> None:
    """A broken first line does not turn a JSON Lines file into a document."""
    path = tmp_path / "a.json"
    path.write_text('{"text": "unterminated\n{"text": "ok"}\n[1, 2]\n{"text": "also ok"}\n')
    records, dead = read_path(path)
    assert [r["text"] for r in records] == ["ok", "also ok"]
    assert [d["source"] for d in dead] == [f"{path}:1", f"{path}:3"]


def test_jsonl_line_holding_an_array_of_objects_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "ok"}\n[{"text": "a"}, {"text": "b"}]\n')
    records, dead = read_path(path)
    assert len(records) == 1 and len(dead) == 1
    assert "JSON array of 2 objects" in dead[0]["error"] and "jq -c" in dead[0]["error"]


# ---------------------------------------------------------------------------------------------
# WebDataset: OS metadata members, blank captions


@pytest.mark.parametrize(
    "name, expected",
    [
        ("._0007.jpg", True),
        ("dir/._0007.jpg", True),
        ("__MACOSX/dir/0007.jpg", True),
        (".DS_Store", True),
        ("a/.hidden/0001.jpg", True),
        ("0007.jpg", False),
        ("dir/0007.seg.png", False),
        ("../evil.jpg", False),
        ("_underscore.jpg", False),
    ],
)
def test_is_os_metadata(name: str, expected: bool) -> None:
    assert is_os_metadata(name) is expected


def test_tar_skips_appledouble_and_macosx_members(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    png = image_bytes()
    tar = (
        TarBuilder()
        .add("0001.png", png)
        .add("0001.txt", b"a red square")
        .add("._0001.png", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
        .add("__MACOSX/._0002.png", b"\x00\x05\x16\x07")
        .add("0002.png", png)
        .add("0002.txt", b"another square")
        .add(".DS_Store", b"Bud1")
        .add("../evil.txt", b"escaped")
        .bytes()
    )
    path = tmp_path / "shard.tar"
    path.write_bytes(tar)
    with caplog.at_level(logging.WARNING, logger="winnow"):
        records, dead = read_path(path)
    assert [(r["source"], r["text"]) for r in records] == [
        (f"{path}#0001", "a red square"),
        (f"{path}#0002", "another square"),
    ]
    assert all(json.loads(r["meta"]) == {} for r in records)
    assert [d["source"] for d in dead] == [f"{path}#../evil.txt"]  # still refused, not skipped
    warnings = [r.getMessage() for r in caplog.records if "operating-system metadata" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 3 " in warnings[0] and str(path) in warnings[0]


def test_tar_without_metadata_members_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "shard.tar"
    path.write_bytes(TarBuilder().add("0001.txt", b"hello").bytes())
    with caplog.at_level(logging.WARNING, logger="winnow"):
        records, _ = read_path(path)
    assert len(records) == 1
    assert not [r for r in caplog.records if "operating-system metadata" in r.getMessage()]


@pytest.mark.parametrize("caption", [b"", b"  \n", b"\n"])
def test_tar_blank_caption_is_no_caption(tmp_path: Path, caption: bytes) -> None:
    png = image_bytes()
    path = tmp_path / "shard.tar"
    path.write_bytes(TarBuilder().add("0001.png", png).add("0001.txt", caption).add("0002.txt", caption).bytes())
    records, dead = read_path(path)
    assert dead == []
    assert [(r["modality"], r["text"]) for r in records] == [("image", None), ("text", None)]


def test_tar_blank_json_caption_is_no_caption(tmp_path: Path) -> None:
    path = tmp_path / "shard.tar"
    path.write_bytes(TarBuilder().add("0001.png", image_bytes()).add("0001.json", b'{"text": "", "k": 1}').bytes())
    records, dead = read_path(path, cfg(caption_extensions=("json",)))
    assert dead == [] and [(r["modality"], r["text"]) for r in records] == [("image", None)]

"""JSON Lines written as UTF-16 or UTF-32 (Windows tools, PowerShell's ``Out-File``), with a
byte-order mark or without, are read as text, not dead-lettered line by line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.jsonl import read_jsonl

TEXTS = ["plain ASCII", "Grüße aus Köln", "委员会将于明年春天发布报告", "emoji \U0001F600 beyond the BMP"]


def _jsonl() -> str:
    return "".join(json.dumps({"id": f"r{i}", "text": t}, ensure_ascii=False) + "\r\n" for i, t in enumerate(TEXTS))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("gz", [False, True])
def test_wide_encodings_with_a_bom_are_read(tmp_path: Path, encoding: str, gz: bool) -> None:
    data = _jsonl().encode(encoding)
    if encoding == "utf-16-be":  # the codec writes no BOM for an explicit byte order
        data = b"\xfe\xff" + data
    path = tmp_path / ("in.jsonl.gz" if gz else "in.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    recs = list(read_jsonl(str(path), ReaderConfig()))
    assert [r.get("text") for r in recs] == TEXTS, recs
    assert all("error" not in r or not r["error"] for r in recs)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_wide_encodings_without_a_bom_are_told_by_their_zero_bytes(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(_jsonl().encode(encoding))
    assert [r.get("text") for r in read_jsonl(str(path), ReaderConfig())] == TEXTS


def test_a_nul_that_is_not_an_encoding_stays_a_per_line_problem(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"te\x00xt": 1}\n')
    recs = list(read_jsonl(str(path), ReaderConfig()))
    assert recs[0]["text"] == "a" and recs[1].get("error")


def test_bare_cr_line_ends_are_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(_jsonl().replace("\r\n", "\r").encode("utf-8"))
    recs = list(read_jsonl(str(path), ReaderConfig()))
    assert [r.get("text") for r in recs] == TEXTS
    assert [r["source"].rsplit(":", 1)[1] for r in recs] == ["1", "2", "3", "4"]

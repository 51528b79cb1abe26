"""Readers: input expansion, JSONL, Parquet, WebDataset tar, image folders and ReadRecords.

Every input is written at test time under tmp_path (or fsspec memory://).
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import logging
import lzma
import os
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Any

import apache_beam as beam
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from winnow.errors import InputError
from winnow.format import content_id
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers import InputFile, ReadRecords, expand_inputs, format_of, read_file
from winnow.pipeline.readers import transform as read_transform
from winnow.pipeline.records import READ_STAGE, is_dead_letter

from .batches import rows

# ---------------------------------------------------------------------------------------------
# helpers


def cfg(**kw: Any) -> ReaderConfig:
    return ReaderConfig(**kw)


def image_bytes(fmt: str = "PNG", color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buf, format=fmt)
    return buf.getvalue()


def split(items: list[dict]) -> tuple[list[dict], list[dict]]:
    return [r for r in items if not is_dead_letter(r)], [r for r in items if is_dead_letter(r)]


def read_path(path: Path | str, c: ReaderConfig | None = None, fmt: str | None = None) -> tuple[list[dict], list[dict]]:
    c = c or cfg()
    f = InputFile(str(path), fmt or format_of(str(path)))
    return split(list(read_file(f, c)))


def compress(data: bytes, codec: str | None) -> bytes:
    if codec is None:
        return data
    if codec == "gz":
        return gzip.compress(data)
    if codec == "zst":
        buf = io.BytesIO()
        with zstandard.ZstdCompressor().stream_writer(buf, closefd=False) as w:  # no content size
            w.write(data)
        return buf.getvalue()
    if codec == "bz2":
        return bz2.compress(data)
    if codec == "xz":
        return lzma.compress(data)
    raise ValueError(codec)


def jsonl(*objs: Any) -> bytes:
    return b"".join((o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objs)


class TarBuilder:
    """Builds a tar in memory with members in the order added."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.GNU_FORMAT)

    def add(self, name: str, data: bytes) -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        self.tf.addfile(info, io.BytesIO(data))
        return self

    def link(self, name: str, target: str) -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        self.tf.addfile(info)
        return self

    def bytes(self) -> bytes:
        self.tf.close()
        return self.buf.getvalue()


# ---------------------------------------------------------------------------------------------
# formats and input expansion


@pytest.mark.parametrize(
    "name, expected",
    [
        ("a.jsonl", "jsonl"),
        ("a.JSON.GZ", "jsonl"),
        ("a.ndjson.zst", "jsonl"),
        ("a.jsonl.bz2", "jsonl"),
        ("a.parquet", "parquet"),
        ("a.tar", "webdataset"),
        ("a.tar.gz", "webdataset"),
        ("a.tgz", "webdataset"),
        ("a.tar.zst", "webdataset"),
        ("a.jpg", "imagedir"),
        ("a.TIFF", "imagedir"),
        ("a.txt", None),
        ("a.parquet.gz", None),
        ("a.csv", None),
    ],
)
def test_format_of(name: str, expected: str | None) -> None:
    assert format_of(name) == expected


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_expand_directory_formats_sidecars_hidden_sorted(tmp_path: Path) -> None:
    png = image_bytes()
    _tree(
        tmp_path,
        {
            "b.jsonl.gz": gzip.compress(b"{}\n"),
            "a.jsonl": b"{}\n",
            "sub/c.parquet": b"",
            "shards/s.tar": b"",
            "imgs/x.jpg": png,
            "imgs/x.txt": b"cap",
            "imgs/y.png": png,
            "imgs/z.png": png,
            "imgs/z.json": b"{}",
            "_SUCCESS": b"",
            ".hidden/skip.jsonl": b"{}\n",
        },
    )
    got = expand_inputs([str(tmp_path), str(tmp_path / "*.jsonl")], cfg())  # overlap is de-duplicated
    t = str(tmp_path)
    assert got == [
        InputFile(f"{t}/a.jsonl", "jsonl"),
        InputFile(f"{t}/b.jsonl.gz", "jsonl"),
        InputFile(f"{t}/imgs/x.jpg", "imagedir", (f"{t}/imgs/x.txt",)),
        InputFile(f"{t}/imgs/y.png", "imagedir", ()),
        InputFile(f"{t}/imgs/z.png", "imagedir", (f"{t}/imgs/z.json",)),
        InputFile(f"{t}/shards/s.tar", "webdataset"),
        InputFile(f"{t}/sub/c.parquet", "parquet"),
    ]


def test_expand_glob_of_images_finds_sidecars(tmp_path: Path) -> None:
    _tree(tmp_path, {"a.jpg": image_bytes("JPEG"), "a.caption": b"c", "b.jpg": image_bytes("JPEG")})
    got = expand_inputs([str(tmp_path / "*.jpg")], cfg())
    assert [(f.uri.rsplit("/", 1)[1], [c.rsplit("/", 1)[1] for c in f.sidecars or ()]) for f in got] == [
        ("a.jpg", ["a.caption"]),
        ("b.jpg", []),
    ]


def test_expand_explicit_format_accepts_other_extensions(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_bytes(b'{"text": "x"}\n')
    assert expand_inputs([str(tmp_path / "data.txt")], cfg(format="jsonl")) == [
        InputFile(str(tmp_path / "data.txt"), "jsonl")
    ]


@pytest.mark.parametrize(
    "files, uri, fmt, needle",
    [
        ({}, "missing.jsonl", "auto", "does not exist"),
        ({"a.jsonl": b"{}"}, "*.parquet", "auto", "matches no file"),
        ({"notes.txt": b"x"}, "notes.txt", "auto", "unknown extension"),
        ({"a.jsonl": b"{}", "notes.csv": b"x"}, "", "auto", "'notes.csv'"),
        ({"a.jpg": b"x", "b.jsonl": b"{}"}, "", "imagedir", "'b.jsonl'"),
        ({"_SUCCESS": b""}, "", "auto", "matches no file"),
    ],
)
def test_expand_errors(tmp_path: Path, files: dict, uri: str, fmt: str, needle: str) -> None:
    _tree(tmp_path, files)
    with pytest.raises(InputError) as exc:
        expand_inputs([str(tmp_path / uri) if uri else str(tmp_path)], cfg(format=fmt))
    assert needle in str(exc.value)
    assert str(tmp_path) in str(exc.value)  # says what was given


def test_file_url_input(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_bytes(jsonl({"text": "via file://"}))
    files = expand_inputs([f"file://{tmp_path}/"], cfg())
    assert files == [InputFile(f"file://{tmp_path}/a.ndjson", "jsonl")]
    assert [r["source"] for r in read_file(files[0], cfg())] == [f"file://{tmp_path}/a.ndjson:1"]


def test_expand_same_file_named_two_ways_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path, {"x/a.jsonl": jsonl({"text": "once"}), "x/b.jsonl": jsonl({"text": "b"})})
    monkeypatch.chdir(tmp_path)
    t = str(tmp_path)
    spellings = [f"{t}/x/a.jsonl", f"file://{t}/x/a.jsonl", f"{t}/x//a.jsonl", f"{t}/x/../x/a.jsonl", "./x/a.jsonl", "x/a.jsonl"]
    expected = [InputFile(f"{t}/x/a.jsonl", "jsonl"), InputFile(f"{t}/x/b.jsonl", "jsonl")]
    assert expand_inputs(spellings + [f"{t}/x/b.jsonl"], cfg()) == expected
    assert expand_inputs(spellings[::-1] + [f"{t}/x/b.jsonl"], cfg()) == expected  # whatever the order
    assert expand_inputs([f"file://{t}/x/"] + spellings, cfg()) == [
        InputFile(f"{t}/x/a.jsonl", "jsonl"),
        InputFile(f"file://{t}/x/b.jsonl", "jsonl"),
    ]
    # a file:// spelling alone keeps its scheme; with a plain one, the smaller URI is shown
    assert expand_inputs([f"file://{t}/x//a.jsonl"], cfg()) == [InputFile(f"file://{t}/x/a.jsonl", "jsonl")]


def test_expand_no_input() -> None:
    with pytest.raises(InputError, match="no input given"):
        expand_inputs([], cfg())


def test_memory_filesystem_round_trip() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/readers-test/part-1.jsonl.gz", gzip.compress(jsonl({"text": "one"}, {"text": "two"})))
    fs.pipe("/readers-test/part-0.jsonl", jsonl({"text": "zero"}))
    try:
        files = expand_inputs(["memory://readers-test/"], cfg())
        assert [f.uri for f in files] == ["memory:///readers-test/part-0.jsonl", "memory:///readers-test/part-1.jsonl.gz"]
        recs = [r for f in files for r in read_file(f, cfg())]
        assert [(r["source"], r["text"]) for r in recs] == [
            ("memory:///readers-test/part-0.jsonl:1", "zero"),
            ("memory:///readers-test/part-1.jsonl.gz:1", "one"),
            ("memory:///readers-test/part-1.jsonl.gz:2", "two"),
        ]
    finally:
        fs.rm("/readers-test", recursive=True)


# ---------------------------------------------------------------------------------------------
# JSONL


GOOD_A = {"text": "first good", "id": "a"}
GOOD_B = {"text": "last good", "id": "b"}


@pytest.mark.parametrize(
    "bad, config, needles",
    [
        (b'{"text": "no end"', {}, ["malformed JSON", "column"]),
        (b"[1, 2]", {}, ["expected a JSON object", "array"]),
        (b'"just a string"', {}, ["expected a JSON object", "string"]),
        (b'{"text": 42}', {}, ["'text'", "string", "number"]),
        (b'{"text": ["a", "b"]}', {}, ["'text'", "string", "array"]),
        (b'{"body": {"k": 1}}', {"text_field": "body"}, ["'body'", "string", "object"]),
        (b'{"text": "caf\xe9"}', {}, ["not valid UTF-8", "0xe9"]),
        (b'{"text": "' + b"x" * 100 + b'"}', {"max_record_bytes": 64}, ["max_record_bytes", "112 bytes"]),
        (b'{"text": "\\ud800 alone"}', {}, ["unpaired"]),
        (b'{"text": "t", "img": "not base64!"}', {"image_field": "img"}, ["'img'", "base64"]),
        (
            b'{"text": "t", "img": "' + base64.b64encode(b"hello, not an image") + b'"}',
            {"image_field": "img"},
            ["not a readable image", "'img'"],
        ),
        (b'{"text": "t", "img": 7}', {"image_field": "img"}, ["'img'", "number"]),
    ],
)
def test_jsonl_each_malformed_line_is_one_dead_letter(tmp_path: Path, bad: bytes, config: dict, needles: list[str]) -> None:
    c = cfg(**config)
    good_a = dict(GOOD_A) if c.text_field == "text" else {c.text_field: "first good", "id": "a"}
    good_b = dict(GOOD_B) if c.text_field == "text" else {c.text_field: "last good", "id": "b"}
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(good_a, bad, good_b))
    records, dead = read_path(path, c)
    assert [(r["id"], r["source"]) for r in records] == [("a", f"{path}:1"), ("b", f"{path}:3")]
    assert len(dead) == 1
    d = dead[0]
    assert d["source"] == f"{path}:2"
    assert d["reject_stage"] == READ_STAGE
    for needle in needles:
        assert needle in d["error"]
    assert d["text"]  # the raw line (or its head) is kept for inspection


def test_jsonl_over_long_line_is_not_held_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_bytes(jsonl(GOOD_A, {"text": "y" * 300_000}, GOOD_B))
    records, dead = read_path(path, cfg(max_record_bytes=1000))
    assert [r["id"] for r in records] == ["a", "b"]
    assert len(dead) == 1 and dead[0]["source"] == f"{path}:2"
    assert "300,012 bytes" in dead[0]["error"]
    assert len(dead[0]["text"]) <= 4096  # only a head of the line was kept


def test_jsonl_line_split_across_read_chunks(tmp_path: Path) -> None:
    from winnow.pipeline.readers.jsonl import LineReader

    data = b"aaaa\nbb\n\nccccccccc\nlast-no-newline"
    got = [(line, size) for line, size in LineReader(io.BytesIO(data), max_bytes=6, chunk=3)]
    # over-long lines come back as a head (up to 4 KB) with their full size
    assert got == [(b"aaaa", 4), (b"bb", 2), (b"", 0), (b"ccccccccc", 9), (b"last-no-newline", 15)]


def test_jsonl_record_conventions(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    lines = [
        b"\xef\xbb\xbf" + json.dumps({"text": "bom", "id": "s1", "lang": "en"}).encode(),
        b"",
        b"   ",
        json.dumps({"text": "int id", "id": 7}).encode() + b"\r",
        json.dumps({"text": "empty id", "id": ""}).encode(),
        json.dumps({"text": "bool id", "id": True}).encode(),
        json.dumps({"text": None, "n": 1}).encode(),
        json.dumps({"other": "no text field"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    records, dead = read_path(path)
    assert dead == []
    got = [(r["source"].rsplit(":", 1)[1], r["id"], r["text"], json.loads(r["meta"]), r["modality"]) for r in records]
    assert got == [
        ("1", "s1", "bom", {"lang": "en"}, "text"),
        ("4", "7", "int id", {}, "text"),
        ("5", content_id("empty id", None, None), "empty id", {"id": ""}, "text"),
        ("6", content_id("bool id", None, None), "bool id", {"id": True}, "text"),
        ("7", content_id(None, None, None), None, {"n": 1}, "text"),
        ("8", content_id(None, None, None), None, {"other": "no text field"}, "text"),
    ]


def test_jsonl_custom_fields_meta_fields_and_image(tmp_path: Path) -> None:
    png = image_bytes()
    path = tmp_path / "f.jsonl"
    path.write_bytes(
        jsonl({"body": "hello", "uid": "u1", "keep": 1, "drop": 2, "img": base64.b64encode(png).decode()})
    )
    records, dead = read_path(path, cfg(text_field="body", id_field="uid", meta_fields=("keep",), image_field="img"))
    assert dead == []
    (r,) = records
    assert (r["id"], r["text"], r["image"], r["modality"], json.loads(r["meta"])) == ("u1", "hello", png, "image_text", {"keep": 1})


LINES = [{"text": f"line {i}", "id": f"id{i}"} for i in range(3000)]


@pytest.mark.parametrize("codec", [None, "gz", "zst", "bz2", "xz"])
def test_jsonl_compressed_streams(tmp_path: Path, codec: str | None) -> None:
    path = tmp_path / ("in.jsonl" + (f".{codec}" if codec else ""))
    path.write_bytes(compress(jsonl(*LINES), codec))
    records, dead = read_path(path)
    assert dead == []
    assert [r["id"] for r in records] == [o["id"] for o in LINES]
    assert records[-1]["source"] == f"{path}:3000"
    again, _ = read_path(path)
    assert again == records  # deterministic


def test_jsonl_zstd_multiple_frames(tmp_path: Path) -> None:
    path = tmp_path / "multi.jsonl.zst"
    c = zstandard.ZstdCompressor()
    path.write_bytes(c.compress(jsonl(*LINES[:2])) + c.compress(jsonl(*LINES[2:4])))
    records, dead = read_path(path)
    assert dead == [] and [r["id"] for r in records] == ["id0", "id1", "id2", "id3"]


def _available_prefix(codec: str, data: bytes) -> bytes:
    if codec == "gz":
        return zlib.decompressobj(31).decompress(data)
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


@pytest.mark.parametrize("codec", ["gz", "zst"])
def test_jsonl_truncated_tail(tmp_path: Path, codec: str) -> None:
    lines = [{"text": f"line {i}", "id": f"id{i}"} for i in range(20000)]  # several zstd blocks
    full = compress(jsonl(*lines), codec)
    cut = full[: len(full) * 2 // 3]
    path = tmp_path / f"cut.jsonl.{codec}"
    path.write_bytes(cut)
    complete = _available_prefix(codec, cut).count(b"\n")
    assert 0 < complete < len(lines)
    records, dead = read_path(path)
    assert [r["id"] for r in records] == [f"id{i}" for i in range(complete)]
    assert len(dead) == 1
    assert dead[0]["source"] == f"{path}:{complete + 1}"
    assert "truncated" in dead[0]["error"] and f"after line {complete}" in dead[0]["error"]


_BOMB_READER = """
import sys
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.jsonl import read_jsonl
items = [(r["source"], None if r.get("error") else r["text"], r.get("error"))
         for r in read_jsonl(sys.argv[1], ReaderConfig(max_record_bytes=1 << 20))]
print(repr(items))
# VmHWM is this program's own peak; ru_maxrss would include the forking parent's pre-exec size
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) // 1024)
"""


def test_jsonl_zstd_bomb_stays_within_memory(tmp_path: Path) -> None:
    # 512 MiB of one JSON line compress to ~16 KB; the reader must not inflate it at once
    path = tmp_path / "bomb.jsonl.zst"
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    block = b"a" * (1 << 20)
    parts = [cobj.compress(b'{"text": "')] + [cobj.compress(block) for _ in range(512)]
    parts += [cobj.compress(b'"}\n{"text": "after"}\n'), cobj.flush()]
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 100_000
    out = subprocess.run([sys.executable, "-c", _BOMB_READER, str(path)], capture_output=True, text=True, check=True)
    items_line, rss_mb = out.stdout.strip().splitlines()
    items = eval(items_line)
    assert [(src, text) for src, text, _ in items] == [(f"{path}:1", None), (f"{path}:2", "after")]
    assert "over reader.max_record_bytes" in items[0][2] and "536,870,9" in items[0][2]
    assert int(rss_mb) < 350, f"peak RSS {rss_mb} MB reading a zstd bomb"


@pytest.mark.parametrize(
    "name, data, needle",
    [
        ("missing.jsonl", None, "cannot open"),
        ("fake.jsonl.gz", b"this is not gzip\n", "gzip"),
        ("fake.jsonl.zst", b"this is not zstd\n", "zstd"),
    ],
)
def test_jsonl_unreadable_file_is_one_dead_letter(tmp_path: Path, name: str, data: bytes | None, needle: str) -> None:
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    records, dead = read_path(path)
    assert records == []
    assert len(dead) == 1 and dead[0]["source"] == str(path)
    assert needle in dead[0]["error"]


# ---------------------------------------------------------------------------------------------
# Parquet


def _write_parquet(path: Path, table: pa.Table, **kw: Any) -> None:
    pq.write_table(table, path, **kw)


def test_parquet_rows_across_row_groups(tmp_path: Path) -> None:
    n = 25
    table = pa.table(
        {
            "text": [None if i == 3 else f"row {i}" for i in range(n)],
            "id": pa.array(range(n), pa.int64()),
            "score": [i / 10 for i in range(n)],
            "blob": pa.array([b"\x00\x01"] * n, pa.binary()),
        }
    )
    path = tmp_path / "t.parquet"
    _write_parquet(path, table, row_group_size=10)
    records, dead = read_path(path)
    assert dead == []
    assert [r["source"] for r in records] == [f"{path}:{i + 1}" for i in range(n)]
    assert [r["id"] for r in records] == [str(i) for i in range(n)]
    assert records[3]["text"] is None and records[3]["modality"] == "text"  # null text: a record
    assert json.loads(records[5]["meta"]) == {"score": 0.5}  # binary column not copied into meta


@pytest.mark.parametrize(
    "table, config, needles",
    [
        (pa.table({"text": [1, 2, 3]}), {}, ["'text'", "int64", "expected a string", "3 rows"]),
        (pa.table({"body": ["a"]}), {}, ["no column 'text'", "body"]),
        (pa.table({"text": ["a"], "img": [1]}), {"image_field": "img"}, ["'img'", "int64", "binary"]),
    ],
)
def test_parquet_schema_problems_dead_letter_every_row(tmp_path: Path, table: pa.Table, config: dict, needles: list[str]) -> None:
    path = tmp_path / "bad.parquet"
    _write_parquet(path, table)
    records, dead = read_path(path, cfg(**config))
    assert records == [] and len(dead) == table.num_rows
    assert [d["source"] for d in dead] == [f"{path}:{i + 1}" for i in range(table.num_rows)]
    for needle in needles:
        assert needle in dead[0]["error"]


def test_parquet_row_level_dead_letters(tmp_path: Path) -> None:
    png = image_bytes()
    table = pa.table(
        {
            "text": pa.array([b"ok", b"bad \xff utf8", b"fine", b"img bad"], pa.binary()),
            "img": pa.array([png, None, png, b"not an image"], pa.binary()),
        }
    )
    path = tmp_path / "rows.parquet"
    _write_parquet(path, table)
    records, dead = read_path(path, cfg(image_field="img"))
    assert [(r["source"], r["text"], r["modality"]) for r in records] == [
        (f"{path}:1", "ok", "image_text"),
        (f"{path}:3", "fine", "image_text"),
    ]
    assert [d["source"] for d in dead] == [f"{path}:2", f"{path}:4"]
    assert "not valid UTF-8" in dead[0]["error"]
    assert "not a readable image" in dead[1]["error"] and "'img'" in dead[1]["error"]


def test_parquet_hf_image_struct_and_meta_fields(tmp_path: Path) -> None:
    png = image_bytes()
    table = pa.table(
        {
            "caption": ["a cat"],
            "image": [{"bytes": png, "path": "cat.png"}],
            "w": [4],
            "h": [4],
        }
    )
    path = tmp_path / "hf.parquet"
    _write_parquet(path, table)
    records, dead = read_path(path, cfg(text_field="caption", image_field="image", meta_fields=("w",)))
    assert dead == []
    (r,) = records
    assert (r["text"], r["image"], json.loads(r["meta"])) == ("a cat", png, {"w": 4})


def test_parquet_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"PAR1 but not really")
    records, dead = read_path(path)
    assert records == [] and len(dead) == 1 and dead[0]["source"] == str(path)
    assert "not a readable Parquet file" in dead[0]["error"]


# ---------------------------------------------------------------------------------------------
# WebDataset tar


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    """A 16-bit mono WAV tone, written with the standard library (no soundfile needed)."""
    import wave

    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def _sample_tar() -> bytes:
    png, jpg = image_bytes("PNG"), image_bytes("JPEG")
    return (
        TarBuilder()
        .add("000.jpg", jpg)
        .add("000.txt", b"a red square\n")
        .add("001.png", png)
        .add("001.json", json.dumps({"text": "json caption", "id": "s1", "lang": "en"}).encode())
        .add("001.cls", b"3")
        .add("../evil.txt", b"escaped")
        .add("002.jpg", b"definitely not an image")
        .add("002.txt", b"caption of a broken image")
        .add("003.wav", wav_bytes())
        .add("003.txt", b"spoken words")
        .add("003b.flac", b"plain text, not audio")
        .add("003b.txt", b"caption of broken audio")
        .add("dir/004.jpg", jpg)
        .add("dir/004.caption", b"in a folder")
        .link("005.jpg", "000.jpg")
        .add("006.txt", b"text only")
        .add("/abs.txt", b"absolute")
        .bytes()
    )


def test_webdataset_samples_and_member_problems(tmp_path: Path) -> None:
    path = tmp_path / "shard.tar"
    path.write_bytes(_sample_tar())
    records, dead = read_path(path)
    got = [(r["source"].split("#", 1)[1], r["modality"], r["text"], r["id"], json.loads(r["meta"])) for r in records]
    jpg_id = records[0]["id"]
    assert got == [
        ("000", "image_text", "a red square", jpg_id, {}),
        ("001", "image_text", "json caption", "s1", {"lang": "en", "cls": "3"}),
        ("003", "audio_text", "spoken words", content_id("spoken words", None, wav_bytes()), {}),
        ("dir/004", "image_text", "in a folder", records[3]["id"], {}),
        ("006", "text", "text only", content_id("text only", None, None), {}),
    ]
    assert records[0]["image"] == image_bytes("JPEG") and records[2]["audio"] == wav_bytes()
    assert [d["source"] for d in dead] == [
        f"{path}#../evil.txt",
        f"{path}#002",
        f"{path}#003b",
        f"{path}#005.jpg",
        f"{path}#/abs.txt",
    ]
    assert "escapes the archive" in dead[0]["error"]
    assert "'002.jpg'" in dead[1]["error"] and "not a readable image" in dead[1]["error"]
    assert "not readable audio" in dead[2]["error"] or "is not audio" in dead[2]["error"]
    assert "symbolic link" in dead[3]["error"]
    assert "escapes the archive" in dead[4]["error"]
    assert not (tmp_path / "evil.txt").exists() and not Path("/abs.txt").exists()


@pytest.mark.parametrize(
    "captions, expected",
    [(("txt", "caption", "json"), "from txt"), (("json", "txt"), "from json"), (("caption",), None)],
)
def test_webdataset_caption_priority(tmp_path: Path, captions: tuple, expected: str | None) -> None:
    path = tmp_path / "cap.tar"
    path.write_bytes(
        TarBuilder()
        .add("k.png", image_bytes())
        .add("k.json", json.dumps({"text": "from json", "src": "web"}).encode())
        .add("k.txt", b"from txt")
        .bytes()
    )
    records, dead = read_path(path, cfg(caption_extensions=captions))
    assert dead == [] and len(records) == 1
    assert records[0]["text"] == expected
    assert json.loads(records[0]["meta"])["src"] == "web"


def test_webdataset_gzip_and_size_limit_and_split_key(tmp_path: Path) -> None:
    data = (
        TarBuilder()
        .add("a.txt", b"first")
        .add("b.txt", b"x" * 500)
        .add("c.txt", b"third")
        .add("a.cls", b"1")  # key a again, after other samples
        .bytes()
    )
    path = tmp_path / "s.tar.gz"
    path.write_bytes(gzip.compress(data))
    records, dead = read_path(path, cfg(max_record_bytes=100))
    assert [r["text"] for r in records] == ["first", "third"]
    assert [d["source"] for d in dead] == [f"{path}#b.txt", f"{path}#a.cls"]
    assert "max_record_bytes" in dead[0]["error"]
    assert "appeared earlier" in dead[1]["error"]


def test_webdataset_truncated_inside_member(tmp_path: Path) -> None:
    big = image_bytes("PNG") + b"\x00" * 20000  # PNG readers ignore trailing bytes
    data = TarBuilder().add("0.png", big).add("0.txt", b"zero").add("1.png", big).add("1.txt", b"one").bytes()
    offset = next(m.offset_data for m in tarfile.open(fileobj=io.BytesIO(data)) if m.name == "1.png")
    path = tmp_path / "cut.tar"
    path.write_bytes(data[: offset + 5000])
    records, dead = read_path(path)
    assert [r["text"] for r in records] == ["zero"]
    assert len(dead) == 1 and dead[0]["source"] == f"{path}#1.png"
    assert "truncated or corrupt" in dead[0]["error"] and "'1'" in dead[0]["error"]


def test_webdataset_truncated_at_member_boundary(tmp_path: Path) -> None:
    data = TarBuilder().add("0.txt", b"zero").add("1.txt", b"one").add("2.txt", b"two").bytes()
    offset = next(m.offset for m in tarfile.open(fileobj=io.BytesIO(data)) if m.name == "2.txt")
    path = tmp_path / "cut.tar"
    path.write_bytes(data[:offset])  # no end-of-archive marker: tarfile itself would stop quietly
    records, dead = read_path(path)
    assert [r["text"] for r in records] == ["zero"]
    assert len(dead) == 1 and dead[0]["source"] == f"{path}#1"  # the pending sample may be incomplete
    assert "end-of-archive marker" in dead[0]["error"]


@pytest.mark.parametrize("suffix", ["tar", "tar.gz", "tgz", "tar.bz2", "tar.xz", "tar.zst"])
def test_webdataset_compressed_archives(tmp_path: Path, suffix: str) -> None:
    codec = {"tar": None, "tar.gz": "gz", "tgz": "gz", "tar.bz2": "bz2", "tar.xz": "xz", "tar.zst": "zst"}[suffix]
    path = tmp_path / f"s.{suffix}"
    path.write_bytes(compress(TarBuilder().add("a.png", image_bytes()).add("a.txt", b"cap").bytes(), codec))
    assert expand_inputs([str(path)], cfg()) == [InputFile(str(path), "webdataset")]
    records, dead = read_path(path)
    assert dead == [] and [(r["source"], r["text"], r["modality"]) for r in records] == [(f"{path}#a", "cap", "image_text")]


def test_webdataset_not_a_tar(tmp_path: Path) -> None:
    path = tmp_path / "junk.tar"
    path.write_bytes(b"\x07" * 1500)
    records, dead = read_path(path)
    assert records == [] and len(dead) == 1 and dead[0]["source"] == str(path)
    assert "not a readable tar archive" in dead[0]["error"]


# ---------------------------------------------------------------------------------------------
# image folders


def test_imagedir_with_sidecars(tmp_path: Path) -> None:
    png, jpg = image_bytes("PNG"), image_bytes("JPEG")
    _tree(
        tmp_path,
        {
            "a.jpg": jpg,
            "a.txt": b"caption a\n",
            "b.png": png,
            "b.json": json.dumps({"text": "caption b", "id": "B", "author": "x"}).encode(),
            "c.png": png,
            "d.jpg": b"broken",
            "e.png": png,
            "e.txt": b"\xff\xfe bad",
        },
    )
    files = expand_inputs([str(tmp_path)], cfg())
    assert [f.format for f in files] == ["imagedir"] * 5
    records, dead = split([r for f in files for r in read_file(f, cfg())])
    assert [(r["source"], r["text"], r["id"], json.loads(r["meta"]), r["modality"]) for r in records] == [
        (str(tmp_path / "a.jpg"), "caption a", content_id("caption a", jpg, None), {}, "image_text"),
        (str(tmp_path / "b.png"), "caption b", "B", {"author": "x"}, "image_text"),
        (str(tmp_path / "c.png"), None, content_id(None, png, None), {}, "image"),
    ]
    assert [d["source"] for d in dead] == [str(tmp_path / "d.jpg"), str(tmp_path / "e.png")]
    assert "not a readable image" in dead[0]["error"]
    assert "not valid UTF-8" in dead[1]["error"] and "e.txt" in dead[1]["error"]


def test_imagedir_every_sidecar_belongs_to_its_image(tmp_path: Path) -> None:
    jpg = image_bytes("JPEG")
    pretty = json.dumps({"text": "json caption", "id": "A", "author": "x", "tags": ["t"]}, indent=2).encode()
    _tree(
        tmp_path,
        {
            "a.jpg": jpg,
            "a.txt": b"txt caption\n",
            "a.caption": b"second choice",
            "a.json": pretty,  # pretty-printed: would be dead letters as a JSONL input
            "b.jpg": jpg,
            "b.json": pretty,
            "c.jpg": jpg,
            "c.txt": b"c caption",
            "c.json": b"[1, 2]",
        },
    )
    t = str(tmp_path)
    files = expand_inputs([t], cfg())
    assert files == [
        InputFile(f"{t}/a.jpg", "imagedir", (f"{t}/a.txt", f"{t}/a.caption", f"{t}/a.json")),
        InputFile(f"{t}/b.jpg", "imagedir", (f"{t}/b.json",)),
        InputFile(f"{t}/c.jpg", "imagedir", (f"{t}/c.txt", f"{t}/c.json")),
    ]
    expected = [
        (f"{t}/a.jpg", "txt caption", "A", {"author": "x", "tags": ["t"]}),  # json meta, txt caption
        (f"{t}/b.jpg", "json caption", "A", {"author": "x", "tags": ["t"]}),
    ]
    for listed in (files, [InputFile(f.uri, f.format) for f in files]):  # found when listing, or looked for
        records, dead = split([r for f in listed for r in read_file(f, cfg())])
        assert [(r["source"], r["text"], r["id"], json.loads(r["meta"])) for r in records] == expected
        assert [d["source"] for d in dead] == [f"{t}/c.jpg"]
        assert "c.json" in dead[0]["error"] and "expected a JSON object" in dead[0]["error"]
    # without json among the caption extensions, a .json beside an image is an input of its own
    files = expand_inputs([t], cfg(caption_extensions=("txt", "caption")))
    assert [f.uri.rsplit("/", 1)[1] for f in files] == ["a.jpg", "a.json", "b.jpg", "b.json", "c.jpg", "c.json"]


def test_imagedir_hand_built_input_looks_for_sidecar(tmp_path: Path) -> None:
    _tree(tmp_path, {"a.png": image_bytes(), "a.caption": b"found it"})
    records, dead = read_path(tmp_path / "a.png", fmt="imagedir")
    assert dead == [] and records[0]["text"] == "found it"
    records, dead = read_path(tmp_path / "a.png", cfg(max_record_bytes=10), fmt="imagedir")
    assert records == [] and "max_record_bytes" in dead[0]["error"]


# ---------------------------------------------------------------------------------------------
# Beam


def _one_percent_bad(path: Path, n: int) -> tuple[int, int]:
    rows = []
    bad = 0
    for i in range(n):
        if i % 100 == 50:
            rows.append([b"{not json", b"[1]", b'{"text": 3}', b'{"text": "\xff"}'][bad % 4])
            bad += 1
        elif i % 250 == 0:
            rows.append(b"")  # blank: skipped, not counted
        else:
            rows.append(json.dumps({"text": f"doc {i}"}).encode())
    path.write_bytes(gzip.compress(b"\n".join(rows) + b"\n"))
    blanks = sum(1 for r in rows if not r)
    return n - bad - blanks, bad


def test_read_records_pipeline_outputs_and_counters(tmp_path: Path) -> None:
    good, bad = _one_percent_bad(tmp_path / "docs.jsonl.gz", 2000)
    assert bad == 20
    (tmp_path / "shard.tar").write_bytes(TarBuilder().add("k.png", image_bytes()).add("k.txt", b"cap").bytes())
    _write_parquet(tmp_path / "rows.parquet", pa.table({"text": ["p1", "p2"]}))
    files = expand_inputs([str(tmp_path)], cfg())
    assert len(files) == 3

    p = beam.Pipeline(runner="FnApiRunner")
    out = p | "ReadAll" >> ReadRecords(files, cfg())
    records, dead = rows(out.records, "RecordRows"), rows(out.dead, "DeadRows")
    expected_records = good + 1 + 2
    assert_that(
        records | beam.combiners.Count.Globally(), equal_to([expected_records]), label="CountRecords"
    )
    assert_that(
        records
        | beam.Filter(lambda r: ".jsonl.gz:" not in r["source"])
        | beam.Map(lambda r: (r["source"].rsplit("/", 1)[1], r["text"])),
        equal_to([("shard.tar#k", "cap"), ("rows.parquet:1", "p1"), ("rows.parquet:2", "p2")]),
        label="OtherRecords",
    )
    assert_that(
        dead | beam.Map(lambda r: (r["reject_stage"], int(r["source"].rsplit(":", 1)[1]) % 100)),
        equal_to([(READ_STAGE, 51)] * bad),  # line i+1 for i % 100 == 50
        label="DeadLetters",
    )
    result = p.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("winnow"))["counters"]
    }
    assert counters["read/records"] == expected_records
    assert counters["read/dead_letter"] == bad
    assert counters["read/files"] == 3


def _row(r: dict) -> tuple:
    return (r["source"], r["id"], r["text"], r["meta"], r["image"], r.get("error"))


def _read_in_pipeline(files: list[InputFile], c: ReaderConfig, expected: list[dict]) -> tuple[bytes, dict[str, int]]:
    """Run ReadRecords, check it gives ``expected`` (records and dead letters); the graph and counters."""
    p = beam.Pipeline(runner="FnApiRunner")
    out = p | "ReadAll" >> ReadRecords(files, c)
    recs, dead = split(expected)
    assert_that(rows(out.records, "RecordRows") | "R" >> beam.Map(_row), equal_to([_row(r) for r in recs]),
                label="Records")
    assert_that(rows(out.dead, "DeadRows") | "D" >> beam.Map(_row), equal_to([_row(r) for r in dead]), label="Dead")
    graph = p.to_runner_api().SerializeToString()
    result = p.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("winnow"))["counters"]
    }
    return graph, counters


@pytest.mark.parametrize("embed_max", [read_transform.EMBED_MAX_FILES, 2])
def test_read_records_undecodable_file_and_member_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embed_max: int
) -> None:
    monkeypatch.setattr(read_transform, "EMBED_MAX_FILES", embed_max)
    bad_file = tmp_path / os.fsdecode(b"bad\xff.jsonl")  # not UTF-8: surrogate-escaped in Python
    bad_file.write_bytes(jsonl({"text": "from a badly named file"}))
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        data = b"latin-1 member"
        info = tarfile.TarInfo("caf\xe9.txt")  # stored as the latin-1 bytes caf\xe9
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    (tmp_path / "w.tar").write_bytes(tar.getvalue())
    (tmp_path / "ok.jsonl").write_bytes(jsonl({"text": "fine"}))
    files = expand_inputs([str(tmp_path)], cfg())
    assert [f.uri for f in files] == [str(bad_file), str(tmp_path / "ok.jsonl"), str(tmp_path / "w.tar")]
    expected = [r for f in files for r in read_file(f, cfg())]  # opened by the real name
    t = str(tmp_path)
    assert [(r["source"], r["text"]) for r in expected] == [
        (f"{t}/bad\\xff.jsonl:1", "from a badly named file"),  # readable, encodable
        (f"{t}/ok.jsonl:1", "fine"),
        (f"{t}/w.tar#caf\\xe9", "latin-1 member"),
    ]
    _, counters = _read_in_pipeline(files, cfg(), expected)
    assert counters["read/records"] == 3 and counters["read/files"] == 3


def test_read_records_expands_long_lists_on_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jpg = image_bytes("JPEG")
    tree = {f"j/f{i}.jsonl": jsonl({"text": f"doc {i}"}, b"{bad") for i in range(6)}
    tree.update(
        {
            "imgs/a.jpg": jpg,
            "imgs/a.txt": b"cap a",
            "imgs/a.json": json.dumps({"id": "A", "k": 1}, indent=1).encode(),
            "imgs/b.png": image_bytes(),
            "s.tar": TarBuilder().add("k.png", image_bytes()).add("k.txt", b"tar cap").bytes(),
            "_SUCCESS": b"",
        }
    )
    _tree(tmp_path, tree)
    t = str(tmp_path)
    inputs = [t, f"{t}/j/*.jsonl", f"file://{t}/j/f1.jsonl", f"{t}/imgs//a.jpg"]  # overlapping
    files = expand_inputs(inputs, cfg())
    assert len(files) == 9 and files.uris == tuple(inputs)
    expected = [r for f in files for r in read_file(f, cfg())]
    assert len(expected) == 6 * 2 + 3
    embedded, counters = _read_in_pipeline(files, cfg(), expected)
    assert counters["read/files"] == 9
    monkeypatch.setattr(read_transform, "EMBED_MAX_FILES", 8)  # 9 files: past the limit
    listed, counters = _read_in_pipeline(files, cfg(), expected)  # the same items either way
    assert counters["read/files"] == 9
    assert b"ReadAll/Files" in embedded and b"ReadAll/Expand" not in embedded
    assert b"ReadAll/Expand" in listed and b"ReadAll/Files" not in listed  # the graph holds only the inputs
    # a hand-built list without its inputs is embedded whatever its length
    graph, _ = _read_in_pipeline(list(files), cfg(), expected)
    assert b"ReadAll/Files" in graph


def test_progress_is_rate_limited(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    progress = read_transform._Progress()
    caplog.set_level(logging.DEBUG, logger="winnow")
    monkeypatch.setattr(read_transform, "PROGRESS_INTERVAL_S", 3600.0)
    progress.add(1, 100, 2)
    assert not [r for r in caplog.records if "read " in r.getMessage()]
    monkeypatch.setattr(read_transform, "PROGRESS_INTERVAL_S", 0.0)
    progress.add(11, 119_900, 1)
    msgs = [r.getMessage() for r in caplog.records if r.name == "winnow"]
    assert msgs == ["winnow: read 12 files, 120,000 records, 3 dead letters"]


# ---------------------------------------------------------------------------------------------
# S3 on loopback


def test_s3_inputs_through_fsspec(s3: Any) -> None:
    png = image_bytes()
    s3.pipe("winnow-readers/in/a.jsonl.gz", gzip.compress(jsonl({"text": "from s3"}, b"{oops")))
    s3.pipe("winnow-readers/in/imgs/x.png", png)
    s3.pipe("winnow-readers/in/imgs/x.txt", b"s3 caption")
    s3.pipe("winnow-readers/in/s.tar", TarBuilder().add("k.txt", b"tar text").bytes())
    files = expand_inputs(["s3://winnow-readers/in"], cfg())
    assert files == [
        InputFile("s3://winnow-readers/in/a.jsonl.gz", "jsonl"),
        InputFile("s3://winnow-readers/in/imgs/x.png", "imagedir", ("s3://winnow-readers/in/imgs/x.txt",)),
        InputFile("s3://winnow-readers/in/s.tar", "webdataset"),
    ]
    records, dead = split([r for f in files for r in read_file(f, cfg())])
    assert [(r["source"], r["text"]) for r in records] == [
        ("s3://winnow-readers/in/a.jsonl.gz:1", "from s3"),
        ("s3://winnow-readers/in/imgs/x.png", "s3 caption"),
        ("s3://winnow-readers/in/s.tar#k", "tar text"),
    ]
    assert [d["source"] for d in dead] == ["s3://winnow-readers/in/a.jsonl.gz:2"]


def test_dead_letter_errors_carry_no_memory_addresses() -> None:
    from winnow.errors import RecordError
    from winnow.pipeline.readers.common import check_image, dead

    with pytest.raises(RecordError) as info:
        check_image(b"no known image header", "member 'x.jpg'")
    assert "<_io.BytesIO object at 0x" in str(info.value)  # Pillow's message names the object
    letter = dead("s.tar#x", str(info.value))
    assert "cannot identify image file <_io.BytesIO object>" in letter["error"] and " at 0x" not in letter["error"]
    assert dead("f", "handle 0x7f3a9c2b1d40 closed")["error"] == "handle 0x... closed"
    assert dead("f", "byte 0xff at offset 3")["error"] == "byte 0xff at offset 3"  # values stay

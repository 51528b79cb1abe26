"""Two runs of the same hostile input, in two processes, write identical output files: no error
text carries a memory address or another per-process value."""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from winnow.demo.images import tar_bytes
from winnow.format import Manifest

pytestmark = pytest.mark.slow


def _png(color: tuple[int, int, int], size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def _hostile_input(root: Path) -> list[str]:
    good = [json.dumps({"id": f"ok-{i}", "text": f"Record {i} is a plain sentence about rivers."}) for i in range(6)]
    lines = [*good[:3],
             '{"id": "cut", "text": "unterminated',                  # bad JSON
             '{"id": "single", \'text\': 1}',                         # bad JSON
             '{"id": "typed", "text": ["not", "a", "string"]}',       # wrong type
             "[1, 2, 3]",                                              # not an object
             *good[3:]]
    jsonl = root / "mixed.jsonl"
    jsonl.write_bytes("\n".join(lines).encode() + b"\n" + b'{"id": "latin1", "text": "caf\xe9"}\n')
    whole = gzip.compress("\n".join(good).encode() + b"\n", mtime=0)
    (root / "cut.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])  # a stream cut mid-way
    png = _png((200, 30, 30))
    members = [
        ("../escape.txt", b"a member that writes outside the archive"),
        ("/abs/path.txt", b"an absolute member path"),
        ("a-good.png", png), ("a-good.txt", b"A red square."),
        ("b-cut.png", png[: len(png) // 3]), ("b-cut.txt", b"A picture cut short."),
        ("c-noise.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2), ("c-noise.txt", b"Bytes posing as a JPEG."),
        ("d-text-only.txt", b"A caption without an image."),
    ]
    (root / "pairs.tar").write_bytes(tar_bytes(sorted(members)))
    images = root / "images"
    images.mkdir()
    (images / "fine.png").write_bytes(_png((20, 90, 200)))
    (images / "fine.txt").write_text("A blue square.\n")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (images / "broken.txt").write_text("Not really a PNG.\n")
    return [str(jsonl), str(root / "cut.jsonl.gz"), str(root / "pairs.tar"), str(images)]


def _run(inputs: list[str], out: Path) -> None:
    cmd = [sys.executable, "-m", "winnow.pipeline.cli", "run", "--input", *inputs, "--output", str(out),
           "--stages", "normalize,exact_dedup", "--overwrite",
           "--max-dead-letter-fraction", "1"]  # the input is mostly hostile on purpose
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_runs_of_hostile_input_write_identical_files(tmp_path: Path) -> None:
    inputs = _hostile_input(tmp_path)
    out = tmp_path / "out"
    _run(inputs, out)
    first = tmp_path / "first"
    shutil.copytree(out, first)
    _run(inputs, out)  # the same output path, so the resolved config is the same too

    index = (out / "index.json").read_bytes()
    assert index == (first / "index.json").read_bytes()
    m = Manifest.loads(index.decode())
    listed = [s.path for s in (*m.shards, *m.rejects, *m.dead_letter)]
    assert m.dead_letter and listed
    for rel in listed:
        assert (out / rel).read_bytes() == (first / rel).read_bytes(), rel

    dead = pa.concat_tables(pa.ipc.open_file(str(out / s.path)).read_all() for s in m.dead_letter).to_pylist()
    errors = {r["source"].rsplit("/", 1)[-1]: r["error"] for r in dead}
    # Every hostile item is a dead letter that says why, none with a memory address in it.
    assert sorted(errors) == sorted([
        "mixed.jsonl:4", "mixed.jsonl:5", "mixed.jsonl:6", "mixed.jsonl:7", "mixed.jsonl:11",
        "cut.jsonl.gz", "escape.txt", "path.txt", "pairs.tar#b-cut", "pairs.tar#c-noise", "broken.png"])
    assert "escapes the archive" in errors["escape.txt"] and "escapes the archive" in errors["path.txt"]
    # Pillow names the in-memory file it could not identify: the object, never its address.
    assert "cannot identify image file <_io.BytesIO object>" in errors["pairs.tar#c-noise"]
    for err in errors.values():
        assert not re.search(r"0x[0-9a-fA-F]{9,}| at 0x", err), err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["balanced"] and stats["dead_letter"] == len(dead)

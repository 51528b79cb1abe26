"""Input folders with symbolic links: links to files are read, links to folders are not followed
(a link to ``.`` or ``..`` would loop) and are named in a warning, not called files of unknown format."""

from __future__ import annotations

import logging
from pathlib import Path

from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.inputs import InputFile, expand_inputs


def test_links_to_folders_are_skipped_with_a_warning_and_links_to_files_read(tmp_path: Path, caplog) -> None:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "elsewhere.jsonl").write_text('{"text": "b"}\n')
    (root / "b.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    (root / "self").symlink_to(".")
    (root / "sub" / "up").symlink_to("..")
    with caplog.at_level(logging.WARNING, logger="winnow"):
        got = expand_inputs([str(root)], ReaderConfig())
    assert got == [InputFile(f"{root}/a.jsonl", "jsonl"), InputFile(f"{root}/b.jsonl", "jsonl")]
    warned = [r.getMessage() for r in caplog.records if "symbolic link" in r.getMessage()]
    assert len(warned) == 1 and "2 symbolic link(s)" in warned[0] and "self" in warned[0] and "up" in warned[0]

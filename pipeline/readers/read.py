"""Reading one input file, whatever its format: the function every worker runs."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.common import dead
from winnow.pipeline.readers.imagedir import read_image
from winnow.pipeline.readers.inputs import InputFile
from winnow.pipeline.readers.jsonl import read_jsonl
from winnow.pipeline.readers.parquet import read_parquet
from winnow.pipeline.readers.webdataset import read_webdataset
from winnow.pipeline.records import error_text

__all__ = ["read_file"]

_READERS: dict[str, Callable[[InputFile, ReaderConfig], Iterator[dict[str, Any]]]] = {
    "jsonl": lambda f, cfg: read_jsonl(f.uri, cfg),
    "parquet": lambda f, cfg: read_parquet(f.uri, cfg),
    "webdataset": lambda f, cfg: read_webdataset(f.uri, cfg),
    "imagedir": lambda f, cfg: read_image(f.uri, cfg, f.sidecars),
}


def read_file(f: InputFile, cfg: ReaderConfig) -> Iterator[dict[str, Any]]:
    """Records and dead letters of one input file, in file order; never raises for content.

    Records come from :func:`~winnow.pipeline.records.make_record`; dead letters from
    :func:`~winnow.pipeline.records.make_dead_letter` with ``stage="read"``, with the file and
    line, row or member in ``source`` and what went wrong in ``error``. A file that cannot be
    opened gives one dead letter whose source is its URI. The same file always gives the same
    items in the same order.
    """
    n = 0
    try:
        for item in _READERS[f.format](f, cfg):
            n += 1
            yield item
    except Exception as exc:  # noqa: BLE001 - an unforeseen failure ends this file, not the run
        yield dead(f.uri, f"reading {f.format} stopped after {n:,} items: {error_text(exc)}")

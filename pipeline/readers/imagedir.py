"""A folder of images, each with an optional sidecar caption beside it.

Each image file is its own input (so work splits per file) and becomes one record with the
image path as its source. The caption is the first of ``<stem>.<ext>`` for ``ext`` in
``reader.caption_extensions`` that exists: a ``json`` sidecar gives its ``text_field`` (and
its other fields as meta, its ``id_field`` as id), any other is read as UTF-8 text.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any, Iterator

from winnow.errors import RecordError
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.common import (
    build_record,
    caption_extensions,
    dead,
    decode_text,
    describe,
    open_uri,
)
from winnow.pipeline.stages.base import error_text

__all__ = ["read_image", "sidecar_candidates"]


def sidecar_candidates(image_uri: str, cfg: ReaderConfig) -> list[str]:
    """``a/b.txt``, ``a/b.caption``, ``a/b.json`` for ``a/b.jpg``, in priority order."""
    stem, _ = posixpath.splitext(image_uri)
    return [f"{stem}.{ext}" for ext in caption_extensions(cfg)]


class _TooLarge(Exception):
    pass


def _read_limited(uri: str, limit: int) -> bytes:
    with open_uri(uri) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise _TooLarge(uri)
    return data


def _find_sidecar(image_uri: str, cfg: ReaderConfig) -> tuple[str, bytes] | None:
    for cand in sidecar_candidates(image_uri, cfg):
        try:
            return cand, _read_limited(cand, cfg.max_record_bytes)
        except FileNotFoundError:
            continue
    return None


def _caption_fields(name: str, data: bytes, cfg: ReaderConfig) -> dict[str, Any]:
    if name.lower().endswith(".json"):
        try:
            obj = json.loads(decode_text(data, f"sidecar {name}", strip=False))
        except ValueError as exc:
            raise RecordError(f"sidecar {name} is not valid JSON ({exc}); expected a JSON object") from exc
        if not isinstance(obj, dict):
            raise RecordError(f"sidecar {name} holds {describe(obj)}; expected a JSON object")
        return obj
    return {cfg.text_field: decode_text(data, f"sidecar {name}")}


def read_image(uri: str, cfg: ReaderConfig, caption_uri: str | None = None) -> Iterator[dict[str, Any]]:
    """The record (or dead letter) of one image file.

    Args:
        uri: the image file.
        cfg: the reader config.
        caption_uri: the sidecar found when listing; ``""`` when listing found none; None to
            look for one now (one existence check per caption extension).
    """
    limit = cfg.max_record_bytes
    try:
        image = _read_limited(uri, limit)
    except _TooLarge:
        yield dead(uri, f"image is over reader.max_record_bytes={limit:,} bytes; raise reader.max_record_bytes")
        return
    except Exception as exc:  # noqa: BLE001 - any open failure dead-letters the file
        yield dead(uri, f"cannot open {uri}: {error_text(exc)}; check that it exists and is readable")
        return
    try:
        if caption_uri is None:
            found = _find_sidecar(uri, cfg)
        elif caption_uri:
            found = caption_uri, _read_limited(caption_uri, limit)
        else:
            found = None
    except _TooLarge as exc:
        yield dead(uri, f"sidecar {exc} is over reader.max_record_bytes={limit:,} bytes; raise reader.max_record_bytes")
        return
    except Exception as exc:  # noqa: BLE001
        yield dead(uri, f"sidecar caption of {uri} cannot be read: {error_text(exc)}")
        return
    try:
        fields = _caption_fields(*found, cfg) if found else {}
        yield build_record(fields, cfg, uri, image=image, image_what=f"image file {uri}")
    except RecordError as exc:
        yield dead(uri, str(exc))

"""A folder of images, each with an optional sidecar caption beside it.

Each image file is its own input (so work splits per file) and becomes one record with the
image path as its source. Every ``<stem>.<ext>`` for ``ext`` in ``reader.caption_extensions``
beside it is a sidecar of that image (never an input of its own). The caption comes from the
first sidecar that exists, read as UTF-8 text, or, for ``json``, its ``text_field``. A
``json`` sidecar gives its other fields as meta and its ``id_field`` as id even when another
sidecar gives the caption, as a WebDataset sample's ``json`` member does.
"""

from __future__ import annotations

import posixpath
from typing import Any, Iterator

from winnow.errors import RecordError
from winnow.pipeline.config import ReaderConfig
from winnow.pipeline.readers.common import (
    build_record,
    caption_extensions,
    dead,
    decode_text,
    json_object,
    open_uri,
)
from winnow.pipeline.records import error_text

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


def _find_sidecars(image_uri: str, cfg: ReaderConfig) -> tuple[str, ...]:
    """The sidecars of an image, found by opening each candidate (when listing did not)."""
    found = []
    for cand in sidecar_candidates(image_uri, cfg):
        try:
            with open_uri(cand):
                found.append(cand)
        except FileNotFoundError:
            continue
    return tuple(found)


def _is_json(name: str) -> bool:
    return name.lower().endswith(".json")


def _sidecar_fields(sidecars: tuple[str, ...], cfg: ReaderConfig) -> dict[str, Any]:
    """Caption and meta fields from the sidecars (priority order); raises _TooLarge, OSError."""
    if not sidecars:
        return {}
    caption = sidecars[0]
    meta_json = next((s for s in sidecars if _is_json(s)), None)
    fields: dict[str, Any] = {}
    if meta_json is not None:
        fields.update(json_object(_read_limited(meta_json, cfg.max_record_bytes), f"sidecar {meta_json}"))
        if meta_json != caption:
            fields.pop(cfg.text_field, None)  # the caption comes from the first sidecar only
    if caption != meta_json:
        fields[cfg.text_field] = decode_text(
            _read_limited(caption, cfg.max_record_bytes), f"sidecar {caption}"
        )
    return fields


def read_image(uri: str, cfg: ReaderConfig, sidecars: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
    """The record (or dead letter) of one image file.

    Args:
        uri: the image file.
        cfg: the reader config.
        sidecars: the sidecars found when listing, in priority order; ``()`` when listing
            found none; None to look for them now (one check per caption extension).
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
        if sidecars is None:
            sidecars = _find_sidecars(uri, cfg)
        fields = _sidecar_fields(tuple(sidecars), cfg)
        yield build_record(fields, cfg, uri, image=image, image_what=f"image file {uri}")
    except RecordError as exc:
        yield dead(uri, str(exc))
    except _TooLarge as exc:
        yield dead(uri, f"sidecar {exc} is over reader.max_record_bytes={limit:,} bytes; raise reader.max_record_bytes")
    except Exception as exc:  # noqa: BLE001
        yield dead(uri, f"sidecar of {uri} cannot be read: {error_text(exc)}")

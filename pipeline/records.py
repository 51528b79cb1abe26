"""Records as they flow through the Beam graph: plain dicts keyed by column name.

A record has the core columns of :data:`winnow.format.CORE_FIELDS` and, after each stage,
the columns that stage declares. A reject or dead letter is the record (as far as it got)
plus the reject columns. Building records goes through these helpers so every reader and
stage agrees on the shape.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from winnow.format import MODALITIES, content_id

__all__ = [
    "make_record",
    "make_reject",
    "make_dead_letter",
    "is_dead_letter",
    "record_bytes",
    "READ_STAGE",
    "DEAD_LETTER_REASON",
]

#: reject_stage of records that failed before any stage ran (parse errors).
READ_STAGE = "read"
#: reject_reason of every dead letter; the error text says what went wrong.
DEAD_LETTER_REASON = "dead_letter"


def make_record(
    *,
    source: str,
    text: str | None = None,
    image: bytes | None = None,
    audio: bytes | None = None,
    id: str | None = None,
    meta: Mapping[str, Any] | str | None = None,
    modality: str | None = None,
) -> dict[str, Any]:
    """Build a core record.

    Args:
        source: input URI plus ``:line`` or ``#member``.
        text: the text or caption.
        image: encoded image bytes.
        audio: encoded audio bytes.
        id: the source's id; when empty, a content hash (xxh3-128 hex) of text, image and audio.
        meta: pass-through source metadata (a mapping is JSON-encoded with sorted keys).
        modality: inferred from which of text/image/audio are present when not given.
    """
    if modality is None:
        if image is not None:
            modality = "image_text" if text is not None else "image"
        elif audio is not None:
            modality = "audio_text" if text is not None else "audio"
        else:
            modality = "text"
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r} is not one of {MODALITIES}")
    if not id:
        id = content_id(text, image, audio)
    if meta is None:
        meta_s = "{}"
    elif isinstance(meta, str):
        meta_s = meta
    else:
        meta_s = json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str)
    return {
        "id": id,
        "source": source,
        "modality": modality,
        "text": text,
        "image": image,
        "audio": audio,
        "meta": meta_s,
    }


def make_reject(
    record: Mapping[str, Any], stage: str, reason: str, duplicate_of: str | None = None
) -> dict[str, Any]:
    """A copy of ``record`` marked as rejected by ``stage`` for ``reason``."""
    out = dict(record)
    out["reject_stage"] = stage
    out["reject_reason"] = reason
    out["duplicate_of"] = duplicate_of
    out["error"] = None
    return out


def make_dead_letter(
    *,
    stage: str,
    error: str,
    source: str,
    record: Mapping[str, Any] | None = None,
    raw: bytes | str | None = None,
) -> dict[str, Any]:
    """A dead letter: a record that could not be parsed, or on which a stage raised.

    Args:
        stage: ``read`` for parse errors, else the stage that raised.
        error: what went wrong (exception type and message).
        source: where the record came from (file plus line or member).
        record: the record as far as it got, when there is one.
        raw: the raw bytes or text that failed to parse (kept, truncated, in ``text``).
    """
    if record is not None:
        out = dict(record)
    else:
        text: str | None
        if raw is None:
            text = None
        elif isinstance(raw, bytes):
            text = raw[:65536].decode("utf-8", "backslashreplace")
        else:
            text = raw[:65536]
        out = {
            "id": content_id(source, text),
            "source": source,
            "modality": "text",
            "text": text,
            "image": None,
            "audio": None,
            "meta": "{}",
        }
    out["reject_stage"] = stage
    out["reject_reason"] = DEAD_LETTER_REASON
    out["duplicate_of"] = None
    out["error"] = error
    return out


def is_dead_letter(record: Mapping[str, Any]) -> bool:
    return record.get("reject_reason") == DEAD_LETTER_REASON


def record_bytes(record: Mapping[str, Any]) -> int:
    """Approximate encoded size of a record, for sizing shards and batches."""
    n = 64 + len(record.get("id") or "") + len(record.get("source") or "") + len(record.get("meta") or "")
    t = record.get("text")
    if t is not None:
        n += len(t)  # characters; close enough to UTF-8 bytes for sizing
    for k in ("image", "audio"):
        v = record.get(k)
        if v is not None:
            n += len(v)
    return n

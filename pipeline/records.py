"""Records as they flow through the Beam graph: plain dicts keyed by column name.

A record has the core columns of :data:`winnow.format.CORE_FIELDS` and, after each stage,
the columns that stage declares. A reject or dead letter is the record (as far as it got)
plus the reject columns. Building records goes through these helpers so every reader and
stage agrees on the shape.
"""

from __future__ import annotations

import json
import math
import re
import traceback
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
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
    "clean_str",
    "meta_json",
    "error_text",
    "scrub_error",
]

#: reject_stage of records that failed before any stage ran (parse errors).
READ_STAGE = "read"
#: reject_reason of every dead letter; the error text says what went wrong.
DEAD_LETTER_REASON = "dead_letter"


def clean_str(s: str) -> str:
    """``s`` made encodable: lone surrogates (from undecodable file names or surrogate-escaped
    bytes) become visible ``\\xNN`` escapes instead of breaking every coder downstream."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


_META_ARGS = dict(sort_keys=True, ensure_ascii=False, default=str, allow_nan=False)


def _meta_encoder() -> Any:
    """``json.dumps(value, **_META_ARGS)`` made once: ``dumps`` with arguments builds a new encoder
    (and CPython's C encoder under it) for every record, half the cost of its metadata. The C
    encoder is kept without a circular-reference memo (a memo left by a failed call would
    misreport the next one); a cyclic value still fails, with RecursionError, as before."""
    try:
        encode = c_make_encoder(None, str, encode_basestring, None, ": ", ", ", True, False, False)
    except TypeError:  # no C accelerator (None), or another signature: the Python encoder, made once
        return json.JSONEncoder(**_META_ARGS).encode

    def meta_dumps(value: Any) -> str:
        if isinstance(value, str):  # as JSONEncoder.encode does
            return encode_basestring(value)
        return "".join(encode(value, 0))

    return meta_dumps


_meta_dumps = _meta_encoder()


def meta_json(meta: Mapping[str, Any]) -> str:
    """Strict JSON of source metadata: sorted keys; NaN and infinities become null."""
    try:
        return _meta_dumps(meta)
    except ValueError:
        return _meta_dumps(_finite(dict(meta)))


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
        modality: inferred from which of text/image/audio are present when not given. A record
            with an image is ``image_text``/``image`` even when it carries audio too: the image
            stages curate it and the audio stages pass it by unless their ``modalities`` name
            it; the readers check its audio bytes at read time all the same
            (:func:`winnow.pipeline.readers.common.check_audio`, docs/audio.md).
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
        meta_s = clean_str(meta)
    else:
        meta_s = clean_str(meta_json(meta))
    return {
        "id": clean_str(id),
        "source": clean_str(source),
        "modality": modality,
        "text": text,
        "image": image,
        "audio": audio,
        "meta": meta_s,
    }


def make_reject(
    record: Mapping[str, Any],
    stage: str,
    reason: str,
    duplicate_of: str | None = None,
    duplicate_of_source: str | None = None,
) -> dict[str, Any]:
    """A copy of ``record`` marked as rejected by ``stage`` for ``reason``.

    ``duplicate_of`` is the kept record's id; ids need not be unique across sources, so
    ``duplicate_of_source`` names the kept record exactly.
    """
    out = dict(record)
    out["reject_stage"] = stage
    out["reject_reason"] = reason
    out["duplicate_of"] = duplicate_of
    out["duplicate_of_source"] = duplicate_of_source
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
        error: what went wrong (exception type and message); memory addresses are removed.
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
            "source": clean_str(source),
            "modality": "text",
            "text": text,
            "image": None,
            "audio": None,
            "meta": "{}",
        }
    out["reject_stage"] = stage
    out["reject_reason"] = DEAD_LETTER_REASON
    out["duplicate_of"] = None
    out["duplicate_of_source"] = None
    out["error"] = scrub_error(clean_str(error))  # whoever wrote the message
    out["source"] = clean_str(out.get("source") or source)
    return out


def is_dead_letter(record: Mapping[str, Any]) -> bool:
    return record.get("reject_reason") == DEAD_LETTER_REASON


def _utf8_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def record_bytes(record: Mapping[str, Any]) -> int:
    """Approximate encoded size of a record, for sizing shards and batches: 64 plus the UTF-8
    bytes of its id, source, meta and text and the bytes of its media (the same sum as
    :func:`winnow.shardio.row_sizes` over Arrow columns)."""
    n = 64
    for k in ("id", "source", "meta", "text"):
        v = record.get(k)
        if isinstance(v, str):
            n += _utf8_len(v)
    for k in ("image", "audio"):
        v = record.get(k)
        if v is not None:
            n += len(v)
    return n


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_BARE_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{9,}\b")  # wider than 32 bits: a pointer, not a byte


def scrub_error(text: str) -> str:
    """``text`` without memory addresses (``<_io.BytesIO object at 0x7f...>`` reads
    ``<_io.BytesIO object>``), so the same failure gives the same text in every process and
    run and dead-letter shards stay byte-identical."""
    return _BARE_ADDRESS.sub("0x...", _ADDRESS.sub("", text))


def error_text(exc: BaseException) -> str:
    """``Type: message`` plus the innermost frame, short enough for a report, scrubbed of
    memory addresses (:func:`scrub_error`)."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return scrub_error(f"{type(exc).__name__}: {exc}{where}")[:2000]

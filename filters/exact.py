"""Exact-duplicate keys: a hash of normalized text and/or media bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

import xxhash

from winnow.errors import ConfigError

__all__ = ["ExactDedupConfig", "exact_key", "pick_survivor"]


@dataclass(frozen=True)
class ExactDedupConfig:
    """Options of the ``exact_dedup`` stage.

    Attributes:
        key: what must match: ``auto`` (text for text records, image bytes for images, both
            for image-text pairs, audio likewise), ``text``, ``media`` or ``text+media``.
        casefold: compare text case-insensitively.
        ignore_whitespace: compare text with all whitespace runs collapsed and trimmed.
        partitions: shuffle partitions of the keys (each holds about 1/partitions of them;
            raise it when one worker's share of the keys would not fit in its memory).
    """

    key: Literal["auto", "text", "media", "text+media"] = "auto"
    casefold: bool = False
    ignore_whitespace: bool = True
    partitions: int = 256

    def __post_init__(self) -> None:
        if self.key not in ("auto", "text", "media", "text+media"):
            raise ConfigError("exact_dedup.key", self.key, "one of auto, text, media, text+media")
        if not isinstance(self.partitions, int) or isinstance(self.partitions, bool) or self.partitions < 1:
            raise ConfigError("exact_dedup.partitions", self.partitions, "an integer of at least 1")


def _text_bytes(text: str | None, cfg: ExactDedupConfig) -> bytes | None:
    if text is None:
        return None
    if cfg.ignore_whitespace:
        text = " ".join(text.split())
    if cfg.casefold:
        text = text.casefold()
    return text.encode("utf-8", "surrogatepass")


def exact_key(record: Mapping[str, Any], cfg: ExactDedupConfig) -> str:
    """A 128-bit hex key equal for records that count as exact duplicates.

    The modality is part of the key, so an image never matches a text.
    """
    modality = record.get("modality", "text")
    media = record.get("image") if record.get("image") is not None else record.get("audio")
    mode = cfg.key
    if mode == "auto":
        mode = "text" if modality == "text" else ("media" if modality in ("image", "audio") else "text+media")
    h = xxhash.xxh3_128()
    h.update(f"{modality}|{mode}|".encode())
    if mode in ("text", "text+media"):
        t = _text_bytes(record.get("text"), cfg)
        h.update(b"\x00" if t is None else b"\x01" + len(t).to_bytes(8, "little") + t)
    if mode in ("media", "text+media"):
        h.update(b"\x00" if media is None else b"\x01" + len(media).to_bytes(8, "little") + bytes(media))
    return h.hexdigest()


def pick_survivor(candidates: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """The record kept from a duplicate group: the smallest (id, source), deterministically.

    Takes any iterable (one pass), so a huge group is never held in memory.
    """
    return min(candidates)

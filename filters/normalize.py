"""Text normalization: Unicode normal form, control characters, empty text.

Control characters are replaced, never deleted, so words on either side stay apart: the
line and page breaks that are not ``\\n`` (form feed, vertical tab, NEL, U+2028 LINE
SEPARATOR, U+2029 PARAGRAPH SEPARATOR) become ``\\n``; every other C0/C1 control and DEL
becomes a space. ``\\r\\n`` and lone ``\\r`` become ``\\n``; tab and ``\\n`` are kept.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, MutableMapping

from winnow.errors import ConfigError
from winnow.filters.base import KEEP, RecordFilter, Verdict, drop

__all__ = ["NormalizeConfig", "Normalizer", "normalize_text"]

# C0 and C1 control characters except tab, newline and carriage return; also DEL; and the
# two Unicode line/paragraph separators. Line breaks become "\n", the rest a space.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAKS = frozenset("\x0b\x0c\x85\u2028\u2029")
# Lone surrogates (from surrogateescape'd input) cannot be encoded; treat as control.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _control_replacement(match: re.Match[str]) -> str:
    return "\n" if match.group() in _LINE_BREAKS else " "


def _is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only whitespace and invisible format characters
    (Unicode category Cf: zero-width space and joiners, BOM, bidi marks, soft hyphen)."""
    stripped = text.strip()
    # all() stops at the first visible character: one step for ordinary text.
    return all(c.isspace() or unicodedata.category(c) == "Cf" for c in stripped)


@dataclass(frozen=True)
class NormalizeConfig:
    """Options of the ``normalize`` stage.

    Attributes:
        form: Unicode normal form applied to text (``none`` to skip).
        strip_control: replace C0/C1 control characters (and DEL) other than tab and
            newlines: form feed, vertical tab, NEL, U+2028 and U+2029 become ``\\n``, the others
            a space, so the words around them stay apart; ``\\r\\n`` and ``\\r`` become
            ``\\n``; lone surrogates become U+FFFD.
        collapse_whitespace: turn runs of spaces into one and 3+ newlines into 2 (after
            control characters were replaced).
        drop_empty: drop text records whose text is empty or shows nothing: only whitespace
            and invisible format characters (zero-width space/joiners, BOM, bidi marks).
    """

    form: Literal["NFC", "NFKC", "NFD", "NFKD", "none"] = "NFC"
    strip_control: bool = True
    collapse_whitespace: bool = False
    drop_empty: bool = True

    def __post_init__(self) -> None:
        if self.form not in ("NFC", "NFKC", "NFD", "NFKD", "none"):
            raise ConfigError("normalize.form", self.form, "one of NFC, NFKC, NFD, NFKD, none")


def normalize_text(text: str, cfg: NormalizeConfig) -> str:
    """Apply the configured normalization to one string."""
    if cfg.strip_control:
        text = _CONTROL.sub(_control_replacement, text)
        text = _SURROGATE.sub("\ufffd", text)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cfg.form != "none" and not (text.isascii()):
        text = unicodedata.normalize(cfg.form, text)
    if cfg.collapse_whitespace:
        text = _SPACES.sub(" ", text)
        text = _BLANK_LINES.sub("\n\n", text)
    return text


class Normalizer(RecordFilter):
    """Normalize text in place; drop text-only records left empty.

    Reasons:
        ``normalize_empty_text``: a text record whose text is missing, empty, or only
            whitespace and invisible format characters (e.g. ``"\\u200b\\ufeff"``).
        ``normalize_empty_record``: an image/audio record whose media bytes are empty.
    """

    name: ClassVar[str] = "normalize"
    reasons: ClassVar[tuple[str, ...]] = ("normalize_empty_text", "normalize_empty_record")

    def __init__(self, config: NormalizeConfig | None = None) -> None:
        self.config = config or NormalizeConfig()

    def rewrite(self, record: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        text = record.get("text")
        if text is not None:
            record["text"] = normalize_text(text, self.config)
        return record

    def verdict(self, record: Mapping[str, Any]) -> Verdict:
        if not self.config.drop_empty:
            return KEEP
        modality = record.get("modality")
        if modality == "text":
            text = record.get("text")
            if text is None or _is_blank(text):
                return drop("normalize_empty_text")
            return KEEP
        media = record.get("image") if modality in ("image", "image_text") else record.get("audio")
        if not media:
            return drop("normalize_empty_record")
        return KEEP

"""FineWeb's extra rules (Penedo et al. 2024): lines ending in punctuation, short lines,
characters in duplicated lines, newlines per word.
"""

from __future__ import annotations

from operator import itemgetter, methodcaller

from winnow.filters.quality_config import QualityConfig

__all__ = ["FINEWEB_REASONS", "ENDS_FW_PUNCT", "fineweb", "punct_lines"]

FINEWEB_REASONS: tuple[str, ...] = (
    "quality_fineweb_line_punct", "quality_fineweb_short_lines", "quality_fineweb_dup_line_chars",
    "quality_fineweb_list_ratio",
)

_FW_PUNCT = (".", "!", "?", '"', "'", ")", "\u201d", "\u2019", ":", ";", "\u3002", "\uff01", "\uff1f", "\u2026")
ENDS_FW_PUNCT = methodcaller("endswith", _FW_PUNCT)
_FW_LAST = frozenset(_FW_PUNCT)  # (each one character: a line ends in one when its last character is one)
_LAST = itemgetter(-1)


def punct_lines(lines: list[str]) -> int:
    """How many of ``lines`` (non-empty) end in punctuation (``ENDS_FW_PUNCT``)."""
    return sum(map(_FW_LAST.__contains__, map(_LAST, lines)))


def fineweb(c: QualityConfig, text: str, n: int, lines: list[str], punct_ratio: float, dup_line_chars: int) -> str | None:
    """The first FineWeb rule ``text`` fails, or None."""
    if not lines:
        return "quality_fineweb_line_punct"
    if punct_ratio < c.fineweb_min_line_punct_ratio:
        return "quality_fineweb_line_punct"
    short = sum(1 for ln in lines if len(ln) <= c.fineweb_short_line_chars)
    if short / len(lines) > c.fineweb_max_short_line_ratio:
        return "quality_fineweb_short_lines"
    non_nl = len(text) - text.count("\n")
    if non_nl and dup_line_chars / non_nl > c.fineweb_max_dup_line_char_ratio:
        return "quality_fineweb_dup_line_chars"
    if n and text.count("\n") / n > c.fineweb_max_newline_word_ratio:
        return "quality_fineweb_list_ratio"
    return None

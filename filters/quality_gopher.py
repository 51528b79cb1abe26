"""Gopher quality rules (Rae et al. 2021, appendix A): word count, mean word length, symbols,
bullet and ellipsis lines, words with a letter, stop words.

Word rules read the record's language: a language written without spaces skips the mean word
length rule, a language without a stop-word list skips the stop-word rule.
"""

from __future__ import annotations

import re
from functools import cache
from itertools import filterfalse
from operator import itemgetter, methodcaller

from winnow.filters.quality_config import QualityConfig
from winnow.filters.stopwords import NO_SPACE_LANGS, stop_words

__all__ = ["GOPHER_QUALITY_REASONS", "alpha_words", "gopher_quality"]

GOPHER_QUALITY_REASONS: tuple[str, ...] = (
    "quality_gopher_word_count", "quality_gopher_mean_word_length", "quality_gopher_symbol_ratio",
    "quality_gopher_bullet_lines", "quality_gopher_ellipsis_lines", "quality_gopher_alpha_words",
    "quality_gopher_stop_words",
)

_BULLETS = ("-", "*", "\u2022", "\u25cf", "\u25cb", "\u25aa", "\u25a0", "\u2023", "\u2043", "\u2013", "\u27a2", "\u2192")
_ELLIPSES = ("...", "\u2026")
_BULLET_FIRST = frozenset(_BULLETS)  # (each one character: a line starts with one when its first character is one)
_FIRST = itemgetter(0)
_ENDS_ELLIPSIS = methodcaller("endswith", _ELLIPSES)
# A word with a letter of any script: all letters (str.isalpha, most words), or else the
# pattern finds one; a match starts at the word's first letter and runs to its end, so each
# such word is counted once. The pattern's class also holds numbers that are not digits
# (½, ², Ⅻ); text with one of those (or any character beyond the BMP) is counted word by
# word instead.
_LETTER_WORD = re.compile(r"[^\W\d_]\S*")
# ASCII words: delete what is neither a letter nor whitespace, mark letters "a" and whitespace
# " "; then each word with a letter is one run of "a".
_ASCII_LETTERS = bytes(i for i in range(128) if chr(i).isalpha())
_ASCII_SPACES = bytes(i for i in range(128) if chr(i).isspace())
_ASCII_MARK = bytes.maketrans(_ASCII_LETTERS + _ASCII_SPACES, b"a" * len(_ASCII_LETTERS) + b" " * len(_ASCII_SPACES))
_ASCII_DROP = bytes(i for i in range(128) if not chr(i).isalpha() and not chr(i).isspace())


@cache
def _not_letters() -> re.Pattern[str]:
    """The characters ``_LETTER_WORD``'s class holds that are no letters: numbers that are not
    decimal digits (this Python's Unicode tables; a BMP bitmap, built on first use), and
    every character beyond the BMP, whose class the regex engine would scan range by range."""
    ranges: list[list[int]] = []
    for i in range(0x80, 0x10000):
        ch = chr(i)
        if ch.isnumeric() and not ch.isalpha() and not ch.isdecimal():
            if ranges and ranges[-1][1] == i - 1:
                ranges[-1][1] = i
            else:
                ranges.append([i, i])
    return re.compile("[" + "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges) + "\\U00010000-\\U0010ffff]")


def alpha_words(words: list[str], text: str | None = None) -> int:
    """How many of ``words`` (whitespace tokens) hold a letter (of any script); ``text``: the
    text they are ``text.split()`` of, when known (an ASCII text is counted on its bytes)."""
    if text is not None and text.isascii():
        marked = text.encode("ascii").translate(_ASCII_MARK, _ASCII_DROP)
        return marked.count(b" a") + marked.startswith(b"a")
    rest = list(filterfalse(str.isalpha, words))
    whole = len(words) - len(rest)
    if not rest:
        return whole
    joined = " ".join(rest)
    if joined.isascii():
        marked = joined.encode("ascii").translate(_ASCII_MARK, _ASCII_DROP)
        return whole + marked.count(b" a") + marked.startswith(b"a")
    # Without their ASCII non-letters (digits, punctuation; deleting ASCII bytes leaves valid
    # UTF-8) most of these words are all letters; a word of ASCII non-letters alone vanishes.
    bare = joined.encode("utf-8", "surrogatepass").translate(None, _ASCII_DROP).decode("utf-8", "surrogatepass")
    bare_words = bare.split()
    rest = list(filterfalse(str.isalpha, bare_words))
    whole += len(bare_words) - len(rest)
    if not rest:
        return whole
    joined = " ".join(rest)
    if _not_letters().search(joined):
        return whole + sum(1 for w in rest if any(map(str.isalpha, w)))
    return whole + _LETTER_WORD.subn("", joined)[1]


def gopher_quality(c: QualityConfig, text: str, lang: str | None, words: list[str], n: int, mean_len: float,
                   alpha: float, lines: list[str]) -> str | None:
    """The first Gopher quality rule ``text`` fails, or None."""
    if not c.min_words <= n <= c.max_words:
        return "quality_gopher_word_count"
    if lang not in NO_SPACE_LANGS and not c.min_mean_word_length <= mean_len <= c.max_mean_word_length:
        return "quality_gopher_mean_word_length"
    ellipses = text.count("...") + text.count("\u2026")
    symbols = text.count("#") + ellipses
    if n and symbols / n > c.max_symbol_word_ratio:
        return "quality_gopher_symbol_ratio"
    if lines:
        if sum(map(_BULLET_FIRST.__contains__, map(_FIRST, lines))) / len(lines) > c.max_bullet_lines_ratio:
            return "quality_gopher_bullet_lines"
        # A line ending in an ellipsis holds one of the text's, so there are at most that many.
        if (ellipses / len(lines) > c.max_ellipsis_lines_ratio
                and sum(map(_ENDS_ELLIPSIS, lines)) / len(lines) > c.max_ellipsis_lines_ratio):
            return "quality_gopher_ellipsis_lines"
    if alpha < c.min_alpha_words_ratio:
        return "quality_gopher_alpha_words"
    sw = stop_words(lang)
    if sw is not None and c.min_stop_words > 0:
        found = 0
        for w in words:
            if w in sw or w.lower() in sw:
                found += 1
                if found >= c.min_stop_words:
                    break
        else:
            return "quality_gopher_stop_words"
    return None
